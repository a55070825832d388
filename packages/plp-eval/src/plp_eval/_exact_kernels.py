"""Exact comparison of two distances in numba: the sign of their difference in real arithmetic.

For real-arithmetic ties (see :mod:`plp_eval._kernels`): the sign of the difference of two
distances is computed exactly, from products that are exact in float64 (float32 inputs:
24 x 24 bits; float64 inputs: Dekker's two-product) summed without rounding (Shewchuk's
non-overlapping expansions, as in ``math.fsum``). L2 compares ``|q-a|^2 - |q-b|^2`` as the
exact sum of ``a.a - b.b - 2 q.a + 2 q.b``; cosine compares ``sign(q.g) (q.g)^2 / |g|^2`` by
cross-multiplication, each vector first scaled by a power of two (exact; cosine does not
change). This holds for float32 inputs and for float64 inputs whose products neither
overflow nor underflow.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["exact_sign"]

_PARTIALS = 96  # room for a non-overlapping expansion of any sum of doubles (~40 needed)
_SPLITTER = 134217729.0  # 2**27 + 1 (Dekker)


@numba.njit(cache=True, nogil=True, inline="always")
def _two_product(a: float, b: float) -> tuple[float, float]:
    """Return (p, e) with p + e == a * b exactly (Dekker; no overflow for |a|, |b| < 2**996)."""
    p = a * b
    t = _SPLITTER * a
    a_hi = t - (t - a)
    a_lo = a - a_hi
    t = _SPLITTER * b
    b_hi = t - (t - b)
    b_lo = b - b_hi
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


@numba.njit(cache=True, nogil=True, inline="always")
def _grow(partials: np.ndarray, size: int, x: float) -> int:
    """Add ``x`` exactly to the expansion ``partials[:size]``; return its new size (msum)."""
    if x == 0.0:
        return size
    kept = 0
    for k in range(size):
        y = partials[k]
        if abs(x) < abs(y):
            x, y = y, x
        high = x + y
        low = y - (high - x)
        if low != 0.0:
            partials[kept] = low
            kept += 1
        x = high
    partials[kept] = x
    return kept + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _sign(partials: np.ndarray, size: int) -> int:
    """Sign of the exact sum of a non-overlapping expansion: that of its largest part."""
    for k in range(size - 1, -1, -1):
        if partials[k] > 0.0:
            return 1
        if partials[k] < 0.0:
            return -1
    return 0


@numba.njit(cache=True, nogil=True)
def _exact_dot(
    x: np.ndarray, x_scale: float, y: np.ndarray, y_scale: float, out: np.ndarray
) -> int:
    """Write sum((x * x_scale) * (y * y_scale)) exactly into ``out``; return its size."""
    size = 0
    for k in range(x.shape[0]):
        p, e = _two_product(np.float64(x[k]) * x_scale, np.float64(y[k]) * y_scale)
        size = _grow(out, size, p)
        size = _grow(out, size, e)
    return size


@numba.njit(cache=True, nogil=True)
def _power_of_two_scale(x: np.ndarray) -> float:
    """A power of two that brings the largest |x| into [1, 2) (1.0 for a zero vector)."""
    largest = 0.0
    for k in range(x.shape[0]):
        largest = max(largest, abs(np.float64(x[k])))
    if largest == 0.0:
        return 1.0
    _, exponent = math.frexp(largest)
    return math.ldexp(1.0, 1 - exponent)


@numba.njit(cache=True, nogil=True)
def exact_sign(query: np.ndarray, a: np.ndarray, b: np.ndarray, cosine: bool) -> int:
    """Exact sign of distance(query, a) - distance(query, b) in real arithmetic."""
    partials = np.empty(_PARTIALS, dtype=np.float64)
    size = 0
    if not cosine:  # |q-a|^2 - |q-b|^2 = sum(a*a - b*b - 2 q*a + 2 q*b)
        for k in range(query.shape[0]):
            q, x, y = np.float64(query[k]), np.float64(a[k]), np.float64(b[k])
            for u, v, w in ((x, x, 1.0), (y, y, -1.0), (q, x, -2.0), (q, y, 2.0)):
                p, e = _two_product(u, v)
                size = _grow(partials, size, w * p)
                size = _grow(partials, size, w * e)
        return _sign(partials, size)
    # Cosine distance a < b  <=>  sign(q.a) (q.a)^2 / |a|^2 > sign(q.b) (q.b)^2 / |b|^2.
    q_scale = _power_of_two_scale(query)
    a_scale = _power_of_two_scale(a)
    b_scale = _power_of_two_scale(b)
    dot_a = np.empty(_PARTIALS, dtype=np.float64)
    dot_b = np.empty(_PARTIALS, dtype=np.float64)
    norm_a = np.empty(_PARTIALS, dtype=np.float64)
    norm_b = np.empty(_PARTIALS, dtype=np.float64)
    n_dot_a = _exact_dot(query, q_scale, a, a_scale, dot_a)
    n_dot_b = _exact_dot(query, q_scale, b, b_scale, dot_b)
    n_norm_a = _exact_dot(a, a_scale, a, a_scale, norm_a)
    n_norm_b = _exact_dot(b, b_scale, b, b_scale, norm_b)
    sign_a = _sign(dot_a, n_dot_a) if n_norm_a > 0 else 0  # a zero vector: similarity 0
    sign_b = _sign(dot_b, n_dot_b) if n_norm_b > 0 else 0
    if sign_a != sign_b:
        return -1 if sign_a > sign_b else 1
    if sign_a == 0:
        return 0
    # Same sign s: compare s * (q.a)^2 |b|^2 with s * (q.b)^2 |a|^2.
    for dot, n_dot, norm, n_norm, weight in (
        (dot_a, n_dot_a, norm_b, n_norm_b, 1.0),
        (dot_b, n_dot_b, norm_a, n_norm_a, -1.0),
    ):
        for i in range(n_dot):
            for j in range(n_dot):
                p, e = _two_product(dot[i], dot[j])
                for k in range(n_norm):
                    for part in (p, e):
                        high, low = _two_product(part, norm[k])
                        size = _grow(partials, size, weight * high)
                        size = _grow(partials, size, weight * low)
    return -sign_a * _sign(partials, size)
