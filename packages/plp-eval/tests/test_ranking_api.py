"""Bad input, backends chosen by device, distributed ranking, the light import, per-query AP."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from plp_eval import (
    PlpEvalError,
    _ranking,
    reid_metrics,
    reid_metrics_from_distances,
)


def test_from_distances_bad_input():
    labels = [0, 1]
    with pytest.raises(
        PlpEvalError, match=r"distances block 0 has shape \(2, 3\), expected \(rows, 2\)"
    ):
        reid_metrics_from_distances(np.zeros((2, 3)), labels, labels)
    with pytest.raises(PlpEvalError, match="distances block 1 has NaN or inf"):
        reid_metrics_from_distances(
            iter([np.zeros((1, 2)), np.full((1, 2), np.inf)]), labels, labels
        )
    with pytest.raises(PlpEvalError, match="more rows than the 2 query_labels"):
        reid_metrics_from_distances(np.zeros((3, 2)), labels, labels)
    with pytest.raises(PlpEvalError, match="distances have 1 rows, expected 2"):
        reid_metrics_from_distances(np.zeros((1, 2)), labels, labels)
    with pytest.raises(PlpEvalError, match="max_rank must be >= 1"):
        reid_metrics_from_distances(np.zeros((2, 2)), labels, labels, max_rank=0)
    with pytest.raises(PlpEvalError, match="query_labels == gallery_labels"):
        reid_metrics_from_distances(np.zeros((2, 2)), labels, [1, 0], query_in_gallery=True)


def test_auto_backend_picks_torch_for_cuda_devices_only():
    assert _ranking._torch_device("auto", None, np.zeros(2), torch.zeros(2)) is None
    assert _ranking._torch_device("auto", "cpu", torch.zeros(2)) is None
    assert _ranking._torch_device("auto", "cuda:0") == torch.device("cuda:0")
    assert _ranking._torch_device("torch", None, torch.zeros(2)) == torch.device("cpu")
    assert _ranking._torch_device("numba", "cuda", torch.zeros(2)) is None


# Written to a file for the spawned processes to import (test modules are not importable).
DISTRIBUTED_WORKER = """
import numpy as np
import torch.distributed as dist

from plp_eval import reid_metrics


def data():
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 7, 301)
    features = rng.normal(size=(301, 5)) + 2 * rng.normal(size=(7, 5))[labels]
    return features, labels


def run(rank, world, port, path):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        features, labels = data()
        result = reid_metrics(
            features, labels, features, labels, query_in_gallery=True, distributed=True
        )
        np.save(f"{path}/{rank}.npy", np.array([result.to_dict()], dtype=object))
    finally:
        dist.destroy_process_group()
"""


@pytest.mark.slow
def test_distributed_ranks_return_the_one_process_result(tmp_path, monkeypatch):
    import importlib
    import socket

    (tmp_path / "plp_eval_distributed_worker.py").write_text(DISTRIBUTED_WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    worker = importlib.import_module("plp_eval_distributed_worker")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(worker.run, args=(2, port, str(tmp_path)), nprocs=2)
    features, labels = worker.data()
    expected = reid_metrics(features, labels, features, labels, query_in_gallery=True).to_dict()
    for rank in range(2):  # the same bits on every rank, equal to one process's
        assert np.load(tmp_path / f"{rank}.npy", allow_pickle=True)[0] == expected


def test_import_is_light():
    heavy = "{'sklearn', 'scipy.stats', 'faiss', 'numba'}"
    code = f"import sys, plp_eval; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_per_query_average_precision_is_kept_for_the_worst_queries():
    # Query 0: matches at ranks 2 and 4 -> AP (1/2 + 2/4) / 2 = 0.5; query 1: no match -> NaN;
    # query 2: its only match (label 1 at 0.0) first -> AP 1.
    gallery = np.array([[0.0], [1.0], [2.0], [3.0]])
    with pytest.warns(UserWarning, match="1 of 3 queries have no match"):
        result = reid_metrics(
            np.array([[0.1], [0.0], [-0.5]]), [7, 5, 1], gallery, [1, 7, 2, 7], max_rank=4
        )
    assert result.average_precision[0] == 0.5
    assert np.isnan(result.average_precision[1])
    assert result.average_precision[2] == 1.0
    assert result.mean_average_precision == 0.75
    assert "average_precision" not in result.to_dict()


@pytest.mark.parametrize("size", [1, 63, 64, 200, 4096 + 7])
def test_the_kernel_gathers_every_score_up_to_the_top_in_order(size):
    from plp_eval._kernels import _gather

    rng = np.random.default_rng(size)
    row = rng.normal(size=size).astype(np.float32)
    row[: min(size, 64)] = 5.0  # a first chunk without a candidate
    row[size // 2 : size // 2 + 70] = -5.0  # every score of a chunk, and the next one's
    row[-1] = -5.0  # the last score (in the tail when size is not a multiple of 64)
    for top in (np.float32(-10.0), np.float32(-5.0), np.float32(-1.0), np.float32(10.0)):
        candidates = np.full(size, np.nan, dtype=np.float32)
        index = np.full(size, -1, dtype=np.int64)
        count = _gather(row, top, candidates, index)
        expected = np.flatnonzero(row <= top)
        assert count == len(expected)
        np.testing.assert_array_equal(index[:count], expected)
        np.testing.assert_array_equal(candidates[:count], row[expected])
