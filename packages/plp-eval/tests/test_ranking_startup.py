"""The first calls of a fresh process: the same bits as later ones, on every backend."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from plp_eval import _numpy_ranking, _threads, reid_metrics

# A fresh process ranks the same problem on each backend, three calls in a row, then from
# two threads at once; it reports every result and whether numba was loaded by then.
FRESH_PROCESS = """
import json, sys, threading, warnings
import numpy as np
warnings.simplefilter("ignore")
from plp_eval import reid_metrics

def data():
    arrays = np.load(sys.argv[1])
    return [arrays[name] for name in ("queries", "q_labels", "gallery", "g_labels")]

def bits(result):
    return [result.to_dict(), result.average_precision.tobytes().hex()]

out = {}
for backend in ("auto", "numba", "torch"):
    runs = [bits(reid_metrics(*data(), backend=backend)) for _ in range(3)]
    together = [None, None]
    def call(slot):
        together[slot] = bits(reid_metrics(*data(), backend=backend))
    threads = [threading.Thread(target=call, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out[backend] = {"runs": runs + together, "numba": "numba" in sys.modules}
print(json.dumps(out))
"""


def _data():
    rng = np.random.default_rng(21)
    centres = rng.normal(size=(30, 16))
    q_labels, g_labels = rng.integers(0, 30, 300), rng.integers(0, 30, 1500)
    queries = (centres[q_labels] + rng.normal(size=(300, 16))).astype(np.float32)
    gallery = (centres[g_labels] + rng.normal(size=(1500, 16))).astype(np.float32)
    return queries, q_labels, gallery, g_labels


def _fresh_process(script: str, folder) -> object:
    """What ``script`` prints last (JSON) in a fresh Python, given the path of ``_data()``."""
    queries, q_labels, gallery, g_labels = _data()
    path = folder / "data.npz"
    np.savez(path, queries=queries, q_labels=q_labels, gallery=gallery, g_labels=g_labels)
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_first_calls_of_a_fresh_process_equal_the_steady_ones_on_every_backend(tmp_path):
    out = _fresh_process(FRESH_PROCESS, tmp_path)
    result = reid_metrics(*_data())  # this process: long warm
    expected = [result.to_dict(), result.average_precision.tobytes().hex()]
    for backend, report in out.items():
        for run in report["runs"]:  # three in a row, then two threads at once
            assert run == expected, backend
    # The default path loads nothing to compile: numba only once asked for.
    assert not out["auto"]["numba"] and out["numba"]["numba"]


def _blas_threads():
    """Threads of each BLAS library the ranking limits (those loaded when it first looked)."""
    return [lib["num_threads"] for lib in _threads.thread_controller().info()
            if lib["user_api"] == "blas"]  # fmt: skip


def test_two_threads_at_once_leave_the_blas_threads_as_they_found_them():
    # The single-thread BLAS limit is process-wide: counted, the last call out restores it.
    before = _blas_threads()
    queries, q_labels, gallery, g_labels = _data()
    results = []
    barrier = threading.Barrier(2)

    def call():
        barrier.wait()
        for _ in range(3):
            results.append(reid_metrics(queries, q_labels, gallery, g_labels).to_dict())

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _blas_threads() == before
    assert not _threads._blas_users
    assert all(result == results[0] for result in results) and len(results) == 6


def test_single_threaded_blas_nests_and_restores():
    original = _blas_threads()
    with _threads.single_threaded_blas():
        with _threads.single_threaded_blas():
            inner = _blas_threads()
        still = _blas_threads()
    assert inner == still == [1] * len(original)
    assert _blas_threads() == original


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cosine", [False, True])
def test_exact_sign_equals_rational_arithmetic(dtype, cosine):
    from fractions import Fraction

    rng = np.random.default_rng(22)
    for trial in range(200):
        # Small integers (real ties), scaled copies, and values over many binades.
        if trial % 3 == 0:
            q, a, b = (rng.integers(-2, 3, 4).astype(dtype) for _ in range(3))
        elif trial % 3 == 1:
            q, a = rng.normal(size=4).astype(dtype), rng.normal(size=4).astype(dtype)
            b = (a * dtype(rng.choice([0.5, 2.0, 4.0]))).astype(dtype)
        else:
            q, a, b = (
                (rng.normal(size=4) * 10.0 ** rng.integers(-30, 30, 4)).astype(dtype)
                for _ in range(3)
            )
        fq, fa, fb = ([Fraction(float(x)) for x in v] for v in (q, a, b))
        if cosine:  # distance order: descending sign(q.g) (q.g)^2 / |g|^2 (zero vector: 0)
            keys = []
            for g in (fa, fb):
                dot = sum((x * y for x, y in zip(fq, g, strict=True)), Fraction(0))
                norm = sum((y * y for y in g), Fraction(0))
                keys.append(-(dot * abs(dot) / norm) if norm else Fraction(0))
            difference = keys[0] - keys[1]
        else:
            difference = sum(
                ((x - y) ** 2 - (x - z) ** 2 for x, y, z in zip(fq, fa, fb, strict=True)),
                Fraction(0),
            )
        expected = (difference > 0) - (difference < 0)
        assert _numpy_ranking.exact_sign(q, a, b, cosine) == expected


def test_auto_tiers_up_once_enough_scores_are_ranked(monkeypatch):
    from plp_eval import _ranking

    monkeypatch.delitem(sys.modules, "plp_eval._kernels", raising=False)
    monkeypatch.setattr(_ranking, "_ranked", [0])
    monkeypatch.setattr(_ranking, "TIER_UP_SCORES", 100)
    # The call that brings the count to 100 is the first one ranked with numba.
    assert [_ranking.tier_up(40) for _ in range(3)] == [False, False, True]
    monkeypatch.setattr(_ranking, "_ranked", [0])
    monkeypatch.setitem(sys.modules, "plp_eval._kernels", object())
    assert _ranking.tier_up(1)  # loaded kernels are used at once
    assert _ranking._ranked == [0]


TIER_PROCESS = """
import json, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
from plp_eval import _ranking, reid_metrics
arrays = np.load(sys.argv[1])
data = [arrays[name] for name in ("queries", "q_labels", "gallery", "g_labels")]
_ranking.TIER_UP_SCORES = 3 * len(data[0]) * len(data[2])  # the third call switches
out = []
for _ in range(4):
    result = reid_metrics(*data)
    out.append([result.to_dict(), result.average_precision.tobytes().hex(),
                "plp_eval._kernels" in sys.modules])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_auto_switches_to_numba_at_the_set_call_with_the_same_bits(tmp_path):
    calls = _fresh_process(TIER_PROCESS, tmp_path)
    assert [loaded for *_, loaded in calls] == [False, False, True, True]
    assert all(call[:2] == calls[0][:2] for call in calls)
    result = reid_metrics(*_data(), backend="numba")
    assert calls[0][:2] == [result.to_dict(), result.average_precision.tobytes().hex()]
