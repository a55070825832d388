"""A fork server for the CLI tests: ``python -m invoke ARGS`` without paying the imports each time.

Every CLI test used to start a fresh Python that imported torch and Lightning again (10-25 s on
a 2-core machine, ~150 times per suite). This server imports them once, computes nothing, and
forks a child per command: the child is its own process (pid, process group, signal handlers,
environment, working folder, stdin from /dev/null, stdout and stderr to files) that runs invoke's
own program with the command's arguments and exits with its code, as ``python -m invoke`` does
(atexit handlers and non-daemon threads are finished first). Nothing runs in the server between
forks, so no thread pool or lock is inherited half-way.

Protocol (one request at a time, on stdin/stdout, one JSON object per line): the client sends
``{"args": [...], "env": {...}, "cwd": "...", "stdout": PATH, "stderr": PATH}``; the server
answers the child's pid on one line, then its exit code (as ``subprocess`` reports it: negative
for a signal) on the next.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

# What every CLI command imports anyway: loaded once here, before any fork.
PRELOAD = ("torch", "pytorch_lightning", "invoke.main", "plp_pipelines", "plp_models", "plp_data")


def _exit_code(code: object) -> int:
    """Return the exit status Python gives ``SystemExit(code)`` (printing a text code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(request: dict, replies: int) -> None:
    """Run one command in this forked child and leave the process with its exit code."""
    code = 1
    try:
        os.close(replies)  # the server's answer pipe is not the command's
        os.setpgid(0, 0)  # its own group: a timeout kills the command's workers too
        for number in (signal.SIGTERM, signal.SIGPIPE):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for source, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(source, target)
            os.close(source)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[0] = request["cwd"]  # as for `python -m invoke` run there
        # As if started by `python -m invoke`: Lightning's DDP launcher re-runs that command.
        main = sys.modules["__main__"]
        main.__spec__ = importlib.util.find_spec("invoke.__main__")
        sys.argv = [main.__spec__.origin or "invoke", *request["args"]]
        from invoke.main import program

        try:
            program.run(["invoke", *request["args"]])
            code = 0
        except SystemExit as stop:
            code = _exit_code(stop.code)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 128 + signal.SIGINT
        except BaseException:  # reported as Python would: exit 1
            traceback.print_exc()
            code = 1
        threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter does at exit
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def main() -> None:
    """Preload, then serve requests until stdin closes."""
    for name in PRELOAD:
        __import__(name)
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    print(f"ready {threading.active_count()} {len(os.listdir('/proc/self/task'))}", file=replies)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request, replies.fileno())
        with contextlib.suppress(OSError):  # the child does it too; whichever runs first
            os.setpgid(pid, pid)
        print(pid, file=replies)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), file=replies)


class ForkServer:
    """The client: a server started on first use, one command at a time, stopped at exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None
        self.pending = b""
        self.current: ForkedCommand | None = None
        atexit.register(self.stop)

    def _start(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            self.pending = b""
            self.process = subprocess.Popen(
                [sys.executable, __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=self.root,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            ready = self._line(time.monotonic() + 600)
            if not ready.startswith("ready"):
                raise RuntimeError(f"the CLI fork server did not start: {ready!r}")
        return self.process

    def stop(self) -> None:
        """End the server (it holds nothing worth a clean exit) and close its pipes."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()

    def _line(self, deadline: float) -> str:
        """Return the server's next answer line; raise TimeoutError at ``deadline``."""
        assert self.process is not None and self.process.stdout is not None
        stream = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stream], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(stream, 4096)
            if not chunk:
                raise RuntimeError("the CLI fork server died")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def start(
        self, args: Sequence[str], env: dict[str, str], cwd: Path | None = None
    ) -> ForkedCommand:
        """Start ``python -m invoke ARGS`` in a forked child; return it running (like Popen)."""
        process = self._start()
        assert process.stdin is not None
        if self.current is not None and self.current.returncode is None:  # left by a failed test
            self.current.kill()
            self.current.wait(60)
        folder = Path(tempfile.mkdtemp(prefix="plp-cli-"))
        request = {"args": list(args), "env": env, "cwd": str(cwd or self.root)}
        request.update(stdout=str(folder / "stdout"), stderr=str(folder / "stderr"))
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        pid = int(self._line(time.monotonic() + 600))
        self.current = ForkedCommand(self, pid, [sys.executable, "-m", "invoke", *args], folder)
        return self.current

    def run(
        self, args: Sequence[str], env: dict[str, str], timeout: float, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m invoke ARGS`` in a forked child; return what ``subprocess.run`` would."""
        command = self.start(args, env, cwd)
        try:
            command.wait(timeout)
        except subprocess.TimeoutExpired:
            command.kill()
            command.wait()
            raise
        stdout, stderr = command.communicate()
        return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)


class ForkedCommand:
    """A command the server forked: ``pid``, ``poll``, ``wait``, signals, and its output."""

    def __init__(self, server: ForkServer, pid: int, args: list[str], folder: Path) -> None:
        self.server, self.pid, self.args, self.folder = server, pid, args, folder
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Return the exit code if the command has ended, else None."""
        if self.returncode is None:
            with contextlib.suppress(TimeoutError):
                self.returncode = int(self.server._line(time.monotonic()))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; raise ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if self.returncode is None:
            deadline = time.monotonic() + (timeout if timeout is not None else 10**6)
            try:
                self.returncode = int(self.server._line(deadline))
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
        return self.returncode

    def send_signal(self, number: int) -> None:
        """Send a signal to the command's process (not to its workers)."""
        if self.returncode is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        """Kill the command and every process of its group."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end; return (stdout, stderr) as text."""
        self.wait(timeout)
        out = (self.folder / "stdout").read_text(errors="replace")
        err = (self.folder / "stderr").read_text(errors="replace")
        shutil.rmtree(self.folder, ignore_errors=True)
        return out, err


if __name__ == "__main__":
    main()
