"""plp_pipelines.testing: what a session shares is built once, and rebuilt if left half done."""

from __future__ import annotations

from pathlib import Path

from plp_pipelines.testing import build_once


def test_build_once_builds_once_and_redoes_a_half_done_build(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(folder: Path) -> None:
        calls.append(folder)
        folder.mkdir()
        (folder / "made").write_text(str(len(calls)))

    first = build_once(tmp_path, "thing", build)
    again = build_once(tmp_path, "thing", build)
    assert first == again == tmp_path / "thing" and len(calls) == 1
    assert (first / "made").read_text() == "1"

    # A worker that died half way leaves the folder without its marker: built again, from empty.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "stale").write_text("")
    built = build_once(tmp_path, "other", build)
    assert len(calls) == 2 and not (built / "stale").exists()
    assert (built / "made").read_text() == "2"
