"""Search: gallery indexes (faiss flat and IVF) and the verification ROC, against their floors.

Sections (``--only`` picks one; each prints a Markdown table):

- ``index``: build and query time of ``plp_eval.build_index`` for random gallery vectors (dim
  128: identity centres, ten vectors each, plus Gaussian noise 0.3, so that neighbours are
  what trained embeddings make them), ``flat`` (exact) and ``ivf`` (its defaults: ``sqrt(N)``
  cells, ``nlist / 6`` probed); 1000 fresh queries, k = 10; IVF recall@10 against flat on
  those queries.
- ``verification``: ``plp_eval.verification_metrics`` over every query-gallery pair
  (operating points at FMR 1e-2 / 1e-3 / 1e-4, EER, DIR@FAR), its time beside
  ``plp_eval.reid_metrics`` on the same data in the same process, and its peak extra memory
  (``VmHWM`` after the call minus ``VmRSS`` before, the peak reset through
  ``/proc/self/clear_refs``). Data: ``bench/reid.py``'s (3000 identities, float32).
- ``pipeline``: ``invoke index`` + ``invoke search`` (``plp_pipelines.index`` and ``search``)
  against a plain loop of ``model.embed(x)`` + ``faiss.IndexFlatIP`` on the same image files
  (see ``bench/_search_pipeline.py``); goal: throughput ratio >= 0.9.

    uv run python bench/search.py --sizes small   # make bench (about a minute)
    uv run python bench/search.py --sizes all     # the numbers in bench/README.md (minutes)
    uv run python bench/search.py --sizes all --only pipeline --repeats 1   # about 4 minutes
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reid import make_data  # bench/ is not a package

SIZES = {
    "small": {"index": (20_000,), "verification": ((2_000, 10_000, 128),), "pipeline": (256,)},
    "all": {
        "index": (100_000, 1_000_000),
        "verification": ((10_000, 50_000, 256),),
        "pipeline": (4096,),
    },
}


def _status(key: str) -> float:
    """A ``/proc/self/status`` memory figure in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measured(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """Return ``(result, seconds, peak extra MiB)`` of ``call(*args, **kwargs)``."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - start, _status("VmHWM") - before


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    """``count`` vectors: identity centres (one per ten vectors) plus Gaussian noise 0.3."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 10), dim), dtype=np.float32)
    vectors = centres[rng.integers(0, len(centres), count)]
    vectors += 0.3 * rng.standard_normal(vectors.shape, dtype=np.float32)
    return vectors


def bench_index(counts: tuple[int, ...]) -> None:
    from plp_eval import build_index, index_recall

    print("| gallery x dim | kind | build s | 1000 queries s | queries / s | recall@10 |")
    print("|---|---|---:|---:|---:|---:|")
    for count in counts:
        # Queries from the gallery's own centres: one generator, then split.
        vectors = clustered(count + 1000, 128, seed=0)
        gallery, queries = vectors[:count], vectors[count:]
        flat, build_flat, _ = _measured(build_index, gallery)
        _, query_flat, _ = _measured(flat.search, queries, 10)
        print(
            f"| {count:,} x 128 | flat | {build_flat:.2f} | {query_flat:.2f} | "
            f"{1000 / query_flat:,.0f} | 1.000 (exact) |"
        )
        ivf, build_ivf, _ = _measured(build_index, gallery, kind="ivf")
        _, query_ivf, _ = _measured(ivf.search, queries, 10)
        recall = index_recall(ivf, gallery, query_features=queries)
        cells = f"ivf ({ivf.index.nlist} cells, {ivf.index.nprobe} probed)"
        print(
            f"| {count:,} x 128 | {cells} | {build_ivf:.2f} | {query_ivf:.2f} | "
            f"{1000 / query_ivf:,.0f} | {recall:.3f} |"
        )
        del flat, ivf


def bench_verification(sizes: tuple[tuple[int, int, int], ...]) -> None:
    import warnings

    from plp_eval import reid_metrics, verification_metrics

    print(
        "| queries x gallery x dim | pairs | verification s | reid_metrics s | ratio | "
        "peak extra MiB | TPR@FMR=1e-3 | EER |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for num_queries, num_gallery, dim in sizes:
        queries, q_labels, gallery, g_labels = make_data(num_queries, num_gallery, dim)
        # Verification first: freed memory stays in the process, so a later peak reads low.
        result, seconds, peak = _measured(
            verification_metrics, queries, q_labels, gallery, g_labels, open_set=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # queries without a match: counted, left out
            reid_metrics(queries[:100], q_labels[:100], gallery, g_labels)  # numba loaded
            _, reid_time, _ = _measured(reid_metrics, queries, q_labels, gallery, g_labels)
        pairs = num_queries * num_gallery
        tpr = next(p.true_rate for p in result.operating_points if p.target == 1e-3)
        print(
            f"| {num_queries // 1000}k x {num_gallery // 1000}k x {dim} | {pairs:,} | "
            f"{seconds:.2f} | {reid_time:.2f} | {seconds / reid_time:.2f} | {peak:.0f} | "
            f"{tpr:.4f} | {result.eer:.4f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="small")
    parser.add_argument("--only", choices=("index", "verification", "pipeline"), default=None)
    parser.add_argument("--repeats", type=int, default=3, help="pipeline: best of this many")
    args = parser.parse_args()
    sizes = SIZES[args.sizes]
    if args.only in (None, "index"):
        print("### Gallery index (`plp_eval.build_index`)\n")
        bench_index(sizes["index"])  # type: ignore[arg-type]
        print()
    if args.only in (None, "verification"):
        print("### Verification over every query-gallery pair (`plp_eval.verification_metrics`)\n")
        bench_verification(sizes["verification"])  # type: ignore[arg-type]
        print()
    if args.only in (None, "pipeline"):
        import tempfile

        from _search_pipeline import bench_pipeline

        print(
            "### Index + search of image files against a plain loop (`bench/_search_pipeline.py`)\n"
        )
        with tempfile.TemporaryDirectory() as folder:
            bench_pipeline(sizes["pipeline"], Path(folder), args.repeats)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
