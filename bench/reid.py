"""plp-eval ``reid_metrics`` vs a torchreid-style baseline vs the float32 matmul floor.

All methods see the same random data (float32 features: one of 3000 identity centres plus
noise, so queries have matches and mAP is neither 0 nor 1). plp, the floor (and plp-sort)
take turns in one subprocess, best time of ``--repeats`` runs, so that they see the same load
on this shared machine; torch-cpu and the baseline run in their own subprocesses (the baseline
once at the large size). Peak memory comes from one more run of each group with every block
of 64 KiB or more mmap-ed (``MALLOC_MMAP_THRESHOLD_``, so that freed memory leaves the RSS);
the times from runs without it, as a user's process allocates.
Each time is the best of the runs, in wall-clock seconds and in CPU seconds of the whole
process (all threads: steadier than wall time on a loaded machine; a multithreaded BLAS
that spins while waiting counts there too). Peak extra memory is read from the kernel:
``VmHWM`` (peak resident set) after a run minus ``VmRSS`` before it, with the peak reset
(``/proc/self/clear_refs``) before each run. Methods:

- ``plp``: ``plp_eval.reid_metrics`` (``backend="auto"``) in a process that has loaded the
  numba kernels (the worker loads them before timing anything), i.e. ``auto``'s steady state
  after its tier-up (``plp_eval._ranking.TIER_UP_SCORES``): float32 matmul per query block,
  then only each query's matches are ranked, by counting the non-matches ahead of them
  (exact), in the numba kernels. ``plp-numba`` (``backend="numba"``) is the same path.
- ``plp-numpy``: the numpy path that ``auto`` takes before the tier-up (nothing to load).
- ``plp-sort``: the slower exact candidate (float64 blocks, full stable argsort per row).
- ``baseline``: what torchreid does, vectorised: the full float32 distance matrix, a full
  ``argsort`` of every row, the full ``matches`` matrix, then CMC / AP / mINP.
- ``floor``: only the float32 matmul of the same queries and gallery, block by block: the
  fastest of numpy's multithreaded BLAS and one single-threaded BLAS worker per core, each
  with the gallery as a ``(G, dim)`` array (its transposed view multiplied) and as its
  contiguous ``(dim, G)`` transpose (faster with OpenBLAS; plp stores its gallery so).
- ``floor-given``: the floor in the layout the caller gives, the gallery as ``(G, dim)``
  (the faster of the two thread layouts, no transposed copy): what a caller who does not
  copy the gallery first could reach.
- ``torch-cpu`` / ``torch-cuda``: ``reid_metrics(..., backend="torch", device=...)`` (the
  matmul and the choice of candidates on the device, the exact ranking of the matches on the
  host); ``torch-cuda`` and ``gpu-floor`` only where CUDA is available.
- ``gpu-floor``: the float32 matmul plus a full sort of every row on the GPU, block by block,
  features already on the device.

``--tier`` times one fresh process making calls at 10k x 50k x 256 until two calls after
``auto`` switched to the numba kernels (the switch comes at the call that brings the scores
ranked to ``TIER_UP_SCORES``), with the switch lowered by ``--tier-scores`` if given.

``--gpu-only`` prints the GPU rows alone (``torch-cuda`` and ``gpu-floor`` at every size of
``--sizes all``): what ``bench/gpu.sh`` runs on a lent GPU machine, whose minutes are few.

``--cold`` instead times fresh processes: ``import plp_eval``, then nine ``reid_metrics``
calls at 2k x 10k x 128 per backend (``auto``: numpy; ``numba``: the numba kernels, loaded
from their cache; ``torch`` on the CPU, torch imported first), three processes each; it
prints the first five calls, the steady call (best of calls 6 to 9) and what the first four
calls cost over four steady ones.

    uv run python bench/reid.py --sizes small   # make bench (< 60 s)
    uv run python bench/reid.py --sizes all     # the numbers in bench/README.md (minutes)
    uv run python bench/reid.py --cold          # the first calls of fresh processes
    uv run python bench/reid.py --tier          # auto's switch to numba in a fresh process
    python3 bench/reid.py --gpu-only            # on a CUDA machine: bench/gpu.sh
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

NUM_IDENTITIES = 3000
PLP_METHODS = {"plp": "auto", "plp-numpy": "numpy", "plp-numba": "numba", "plp-sort": "sort"}
NOISE = 1.5


def make_data(
    num_queries: int, num_gallery: int, dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((NUM_IDENTITIES, dim), dtype=np.float32)
    q_labels = rng.integers(0, NUM_IDENTITIES, num_queries)
    g_labels = rng.integers(0, NUM_IDENTITIES, num_gallery)
    queries = centres[q_labels]
    queries += NOISE * rng.standard_normal(queries.shape, dtype=np.float32)
    gallery = centres[g_labels]
    gallery += NOISE * rng.standard_normal(gallery.shape, dtype=np.float32)
    return queries, q_labels, gallery, g_labels


def baseline(
    queries: np.ndarray,
    q_labels: np.ndarray,
    gallery: np.ndarray,
    g_labels: np.ndarray,
    max_rank: int = 50,
) -> dict[str, float]:
    """torchreid's ``eval_market1501`` vectorised over queries (no cameras)."""
    distmat = queries @ gallery.T  # torchreid: distmat.addmm_(qf, gf.t(), beta=1, alpha=-2)
    distmat *= -2.0
    distmat += (queries**2).sum(1, keepdims=True)
    distmat += (gallery**2).sum(1)[None, :]
    indices = np.argsort(distmat, axis=1)
    del distmat
    matches = (g_labels[indices] == q_labels[:, None]).astype(np.int32)
    del indices
    cmc_sum = np.zeros(max_rank)
    ap_sum = inp_sum = 0.0
    valid = 0
    positions = np.arange(1, matches.shape[1] + 1)
    for start in range(0, len(matches), 1000):  # rows in chunks: float64 temporaries stay small
        raw = matches[start : start + 1000]
        keep = raw.any(1)
        raw = raw[keep]
        valid += int(keep.sum())
        cumulative = raw.cumsum(1)
        cmc_sum += (cumulative[:, :max_rank] > 0).sum(0)
        precision_at_hits = (cumulative / positions) * raw
        ap_sum += float((precision_at_hits.sum(1) / raw.sum(1)).sum())
        last = matches.shape[1] - np.argmax(raw[:, ::-1], axis=1)
        inp_sum += float((raw.sum(1) / last).sum())
    return {"mAP": ap_sum / valid, "rank-1": cmc_sum[0] / valid, "mINP": inp_sum / valid}


def floor(queries: np.ndarray, gallery: np.ndarray, threads: int, transposed: bool) -> None:
    """The float32 matmul alone, block by block of queries, in blocks of plp's size.

    ``threads == 1``: numpy's multithreaded BLAS, one block of all the workers' rows at a time;
    else ``threads`` worker threads with single-threaded BLAS, each on its own blocks (the
    layout plp uses). ``transposed``: the gallery given as its ``(dim, G)`` transpose
    (contiguous), which BLAS multiplies faster than the transposed view of a ``(G, dim)`` array.
    Block rows as plp's (``plp_eval._threads.rows_per_worker`` of float32 scores, split evenly
    among the workers): the same memory in flight.
    """
    from plp_eval._threads import even_rows, num_workers, rows_per_worker

    num_gallery = gallery.shape[1 if transposed else 0]
    workers = num_workers()
    rows = even_rows(len(queries), rows_per_worker(4 * num_gallery, workers), workers)
    rows *= workers if threads == 1 else 1
    starts = range(0, len(queries), rows)
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for _ in range(threads):
        buffers.put(np.empty((min(rows, len(queries)), num_gallery), dtype=np.float32))
    right = gallery if transposed else gallery.T

    def product(start: int) -> None:
        stop = min(start + rows, len(queries))
        out = buffers.get()
        np.matmul(queries[start:stop], right, out=out[: stop - start])
        buffers.put(out)

    if threads == 1:
        for start in starts:
            product(start)
        return
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(product, starts))


def gpu_floor(queries: np.ndarray, gallery: np.ndarray, rows: int = 2048) -> float:
    """Seconds of the float32 matmul plus a full sort of every row on the GPU, by blocks."""
    import torch

    q = torch.from_numpy(queries).cuda()
    g = torch.from_numpy(gallery).cuda()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for begin in range(0, len(q), rows):
        torch.sort(q[begin : begin + rows] @ g.T, dim=1)
    torch.cuda.synchronize()
    return time.perf_counter() - start


COLD_SCRIPT = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
if {backend!r} == "torch":
    import torch  # a caller with tensors has torch loaded
start = time.perf_counter()
from plp_eval import reid_metrics
imported = time.perf_counter() - start
sys.path.insert(0, {bench!r})
from reid import make_data
data = make_data(2000, 10000, 128)
calls = []
for _ in range(9):
    begin = time.perf_counter()
    reid_metrics(*data, backend={backend!r})
    calls.append(time.perf_counter() - begin)
print(json.dumps({{"import": imported, "calls": calls}}))
"""


TIER_SCRIPT = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from plp_eval import _ranking, reid_metrics
if {scores}:
    _ranking.TIER_UP_SCORES = {scores}
sys.path.insert(0, {bench!r})
from reid import make_data
data = make_data(10000, 50000, 256)
calls, after = [], 0
while after < 3:
    numba = "plp_eval._kernels" in sys.modules
    begin, cpu = time.perf_counter(), time.process_time()
    reid_metrics(*data)
    path = "numba" if "plp_eval._kernels" in sys.modules else "numpy"
    calls.append([time.perf_counter() - begin, time.process_time() - cpu, path])
    after += path == "numba"
print(json.dumps(calls))
"""


def tier(scores: int) -> None:
    """Print the calls of a fresh process across auto's switch to numba (module docstring)."""
    code = TIER_SCRIPT.format(bench=str(Path(__file__).parent), scores=scores)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    calls = json.loads(done.stdout.strip().splitlines()[-1])
    print("| call | path | time s | CPU s |\n|---|---|---|---|")
    for number, (seconds, cpu, path) in enumerate(calls, 1):
        print(f"| {number} | {path} | {seconds:.2f} | {cpu:.2f} |")


def cold(processes: int = 3) -> None:
    """Print the first five calls of fresh processes (see the module docstring)."""
    print(
        "| backend | process | import plp_eval s | call 1 s | call 2 s | call 3 s | call 4 s "
        "| call 5 s | steady s | first four - 4 x steady s |\n" + "|---" * 10 + "|"
    )
    for backend in ("auto", "numba", "torch"):
        for process in range(processes):
            code = COLD_SCRIPT.format(bench=str(Path(__file__).parent), backend=backend)
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            times = json.loads(done.stdout.strip().splitlines()[-1])
            calls = times["calls"]
            steady = min(calls[5:])  # calls 6 to 9
            extra = sum(calls[:4]) - 4 * steady
            cells = [times["import"], *calls[:5], steady, extra]
            print(
                f"| {backend} | {process + 1} | " + " | ".join(f"{t:.2f}" for t in cells) + " |",
                flush=True,
            )


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(methods: list[str], num_queries: int, num_gallery: int, dim: int, repeats: int) -> None:
    """Run the methods in turn in this process; print each one's best time and peak as JSON.

    Taking turns, the methods see the same machine load (this machine is shared). Before each
    run the peak RSS is reset to the current RSS; the method's peak extra memory is the
    largest rise over its runs.
    """
    from plp_eval import _ranking

    data = make_data(num_queries, num_gallery, dim)
    queries, _, gallery, _ = data
    gallery_t = np.ascontiguousarray(gallery.T) if "floor" in methods else gallery

    def run(method: str) -> dict[str, float]:
        if method == "baseline":
            return baseline(*data)
        if method in ("floor", "floor-given"):
            # floor: the fastest of the four layouts; floor-given: of the two that take the
            # gallery as given, (G, dim), without a transposed copy.
            layouts = [(False, gallery)] + ([(True, gallery_t)] if method == "floor" else [])
            timings, cpu = [], []
            for threads in (1, len(os.sched_getaffinity(0))):
                for transposed, right in layouts:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    floor(queries, right, threads, transposed)
                    timings.append(time.perf_counter() - start)
                    cpu.append(time.process_time() - start_cpu)
            return {"floor_time": min(timings), "floor_cpu": min(cpu)}
        if method == "gpu-floor":
            return {"floor_time": gpu_floor(queries, gallery)}
        if method.startswith("torch-"):
            result = _ranking._evaluate(*data, device=method.removeprefix("torch-"))
        else:
            result = _ranking._evaluate(*data, method=PLP_METHODS[method])
        return {"mAP": result.mean_average_precision, "rank-1": float(result.cmc[0])}

    small = make_data(64, 512, dim, seed=1)  # compile / load the numba kernel outside the timing
    _ranking._evaluate(*small, method="numba")
    for method in methods:
        if method.startswith("torch-"):
            _ranking._evaluate(*small, device=method.removeprefix("torch-"))
    results: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for method in methods:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            before = _status("VmRSS")
            start, start_cpu = time.perf_counter(), time.process_time()
            metrics = run(method)
            seconds = metrics.pop("floor_time", time.perf_counter() - start)
            cpu = metrics.pop("floor_cpu", time.process_time() - start_cpu)
            peak = _status("VmHWM") - before
            best = results.setdefault(
                method, {"time": seconds, "cpu": cpu, "peak": peak, **metrics}
            )
            best["time"], best["peak"] = min(best["time"], seconds), max(best["peak"], peak)
            best["cpu"] = min(best["cpu"], cpu)
    print(json.dumps(results))


# Per size: groups of methods, each group run in turns in one subprocess.
def _gpu() -> tuple[str, ...]:
    """The GPU methods, where CUDA is available."""
    import torch

    return ("torch-cuda", "gpu-floor") if torch.cuda.is_available() else ()


# torch-cpu in its own process: after its large tensors, the next method's first buffers
# cost page faults and compaction it does not pay itself (plp, right after it in turns, lost
# ~15% at 10k x 50k x 256).
SMALL = (("plp", "floor", "floor-given", "plp-numpy", "plp-sort"), ("torch-cpu",), ("baseline",))
SIZES = {
    "small": [(2000, 10000, 128, SMALL)],
    "all": [
        (2000, 10000, 128, SMALL),
        (
            10000,
            50000,
            256,
            (("plp", "floor", "floor-given", "plp-numpy"), ("torch-cpu",), ("baseline",)),
        ),
        (20000, 100000, 512, (("plp", "floor", "floor-given", "plp-numpy"), ("torch-cpu",))),
    ],
}


def _run_worker(
    group: tuple[str, ...],
    num_queries: int,
    num_gallery: int,
    dim: int,
    runs: int,
    mmap: bool = False,
) -> dict[str, dict[str, float]]:
    """The results of ``--worker`` for ``group`` in a fresh process (``{}`` if it failed)."""
    command = [sys.executable, __file__, "--repeats", str(runs), "--worker"]
    command += [",".join(group), str(num_queries), str(num_gallery), str(dim)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"} if mmap else None
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        print(f"<!-- {group} failed: {done.stderr.strip()[-300:]} -->")
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print a Markdown table: time, ratios, peak extra memory and mAP of every method."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    parser.add_argument("--repeats", type=int, default=None, help="runs per method: 3 small, 2 all")
    parser.add_argument("--worker", nargs=4, metavar=("METHODS", "Q", "G", "D"), help="internal")
    parser.add_argument("--cold", action="store_true", help="time fresh processes instead")
    parser.add_argument("--tier", action="store_true", help="time auto's switch to numba")
    parser.add_argument("--tier-scores", type=int, default=0, help="the switch, if lowered")
    parser.add_argument("--gpu-only", action="store_true", help="the GPU rows alone, all sizes")
    args = parser.parse_args()
    if args.cold:
        cold()
        return
    if args.tier:
        tier(args.tier_scores)
        return
    repeats = args.repeats or (3 if args.sizes == "small" else 2)
    if args.worker:
        methods, *shape = args.worker
        worker(methods.split(","), *map(int, shape), repeats)
        return
    if args.gpu_only and not _gpu():
        raise SystemExit("--gpu-only: no CUDA device here (torch.cuda.is_available() is False)")
    print(
        "| queries x gallery x dim | method | time s | baseline / method | method / floor "
        "| CPU s | CPU / floor CPU | peak extra MiB | mAP | rank-1 |\n" + "|---" * 10 + "|"
    )
    sizes = SIZES["all" if args.gpu_only else args.sizes]
    for num_queries, num_gallery, dim, groups in sizes:
        results: dict[str, dict[str, float]] = {}
        for group in (_gpu(),) if args.gpu_only else (*groups, _gpu()) if _gpu() else groups:
            once = "baseline" in group and num_queries > 2000
            # Peaks: large blocks always mmap-ed, so that freed memory leaves the RSS (peaks
            # per run); times: without that (every block's temporaries would be fresh pages).
            peaks = _run_worker(group, num_queries, num_gallery, dim, 1, mmap=True)
            times = peaks if once else _run_worker(group, num_queries, num_gallery, dim, repeats)
            for method, result in times.items():
                results[method] = {**result, "peak": peaks.get(method, result)["peak"]}
        for method, result in results.items():
            speedup = results["baseline"]["time"] / result["time"] if "baseline" in results else 0
            floor_name = "gpu-floor" if method in ("torch-cuda", "gpu-floor") else "floor"
            to_floor = result["time"] / results[floor_name]["time"] if floor_name in results else 0
            cpu_ratio = result["cpu"] / results[floor_name]["cpu"] if floor_name in results else 0
            cells = [
                f"{num_queries // 1000}k x {num_gallery // 1000}k x {dim}",
                method,
                f"{result['time']:.2f}",
                f"{speedup:.1f}" if speedup else "-",
                f"{to_floor:.2f}" if to_floor else "-",
                f"{result['cpu']:.2f}",
                f"{cpu_ratio:.2f}" if cpu_ratio else "-",
                f"{result['peak'] / 2**20:.0f}",
                f"{result['mAP']:.6f}" if "mAP" in result else "-",
                f"{result['rank-1']:.4f}" if "rank-1" in result else "-",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
        if "baseline" in results and "plp" in results:
            gap = abs(results["baseline"]["mAP"] - results["plp"]["mAP"])
            print(f"<!-- |mAP(plp) - mAP(baseline)| = {gap:.2e} -->", flush=True)


if __name__ == "__main__":
    main()
