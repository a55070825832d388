"""Bootstrap intervals and the paired comparison against direct (loop) implementations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from plp_eval import PlpEvalError, ReidMetrics, bootstrap, compare, reid_metrics
from plp_eval._match_ranks import summarize

QUANTILES = (0.025, 0.975)


def random_problem(seed: int, queries: int = 120, noise: float = 1.0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    identities = 25
    centres = rng.normal(size=(identities, 6))
    gallery_labels = np.repeat(np.arange(identities), 6)
    gallery = centres[gallery_labels] + rng.normal(size=(len(gallery_labels), 6))
    query_labels = rng.integers(0, identities + 3, queries)  # some labels not in the gallery
    query_centres = centres[np.minimum(query_labels, identities - 1)]
    query = query_centres + noise * rng.normal(size=(queries, 6))
    return query, query_labels, gallery, gallery_labels


def metrics_of(seed: int, noise: float = 1.0, shift: int = 0) -> ReidMetrics:
    query, query_labels, gallery, gallery_labels = random_problem(seed)
    rng = np.random.default_rng(shift)
    query = query + (noise - 1.0) * rng.normal(size=query.shape) if shift else query
    with pytest.warns(UserWarning, match="queries have no match"):
        return reid_metrics(query, query_labels, gallery, gallery_labels, max_rank=12)


def direct_columns(result: ReidMetrics) -> dict[str, np.ndarray]:
    """Each metric's per-query values, built from the public per-query arrays by hand."""
    first = result.first_match_rank
    return {
        "rank-1": (first == 1) * 1.0,
        "rank-5": ((first >= 1) & (first <= 5)) * 1.0,
        "rank-10": ((first >= 1) & (first <= 10)) * 1.0,
        "mAP": result.average_precision,
        "mINP": result.inp,
        "precision@1": (first == 1) * 1.0,
        "R-precision": result.precision_at_r,
        "MAP@R": result.ap_at_r,
    }


def loop_bootstrap(
    values: np.ndarray, labels: np.ndarray, resamples: int, seed: int
) -> tuple[float, float]:
    """The identity bootstrap written out: draw identities, gather their queries, average."""
    rng = np.random.default_rng(seed)
    identities = np.unique(labels)
    statistics = []
    for _ in range(resamples):
        drawn = identities[rng.integers(len(identities), size=len(identities))]
        chosen = np.concatenate([values[labels == identity] for identity in drawn])
        statistics.append(chosen.mean())
    low, high = np.quantile(statistics, QUANTILES)
    return float(low), float(high)


def test_per_query_values_average_to_the_metrics():
    result = metrics_of(0)
    table = result.per_query()
    assert table.means() == pytest.approx(
        {k: v for k, v in result.to_dict().items() if k in table.names}, abs=1e-15
    )
    assert table.valid.sum() == result.num_valid_queries < result.num_queries
    steps, length = table.curves["cmc"]
    curves = (steps[:, None] >= 1) & (steps[:, None] <= np.arange(1, length + 1))
    np.testing.assert_allclose(curves[table.valid].mean(axis=0), result.cmc, rtol=1e-15)


def test_bootstrap_equals_the_loop_implementation_with_the_same_seed():
    result = metrics_of(1)
    valid = result.valid
    labels = result.query_labels[valid]
    ci = bootstrap(result, resamples=300, seed=7)
    assert ci.num_identities == len(np.unique(labels))
    assert ci.num_queries == valid.sum()
    for name, column in direct_columns(result).items():
        expected = loop_bootstrap(column[valid], labels, 300, seed=7)
        np.testing.assert_allclose(ci.intervals[name], expected, rtol=1e-12, atol=1e-15)
        assert ci.values[name] == pytest.approx(result.to_dict()[name], abs=1e-15)
    # The CMC curve's band too, rank by rank.
    for rank in (2, 12):
        column = (result.first_match_rank[valid] >= 1) & (result.first_match_rank[valid] <= rank)
        expected = loop_bootstrap(column * 1.0, labels, 300, seed=7)
        low, high = ci.curves["cmc"]
        np.testing.assert_allclose([low[rank - 1], high[rank - 1]], expected, rtol=1e-12)
    again = bootstrap(result, resamples=300, seed=7)
    assert again.intervals == ci.intervals
    assert bootstrap(result, resamples=300, seed=8).intervals != ci.intervals


def synthetic(seed: int, identities: int = 150) -> ReidMetrics:
    """A population whose mAP is known: identity k's queries have AP u_k + noise.

    u_k = 0.1 + 0.8 Beta(2, 3) (mean 0.42), 1 to 7 queries per identity drawn independently
    of u_k, noise uniform in [-0.05, 0.05]: the population mAP (a ratio of expected sums) is
    E[u] = 0.42 exactly. Queries of one identity are strongly correlated.
    """
    rng = np.random.default_rng(seed)
    level = 0.1 + 0.8 * rng.beta(2.0, 3.0, identities)
    sizes = rng.integers(1, 8, identities)
    labels = np.repeat(np.arange(identities), sizes)
    precision = level[labels] + rng.uniform(-0.05, 0.05, len(labels))
    values = np.zeros((len(labels), 5))
    values[:, 0] = 1  # every query valid
    values[:, 1] = precision
    return summarize(values, 1, labels)


def test_identity_bootstrap_covers_the_true_map_about_95_percent_of_the_time():
    # 200 seeded populations: the number of intervals covering 0.42 is Binomial(200, ~0.95),
    # sd ~ 3.1 intervals; the bounds below are ~3.5 sd from 190, so the check fails only
    # if the coverage is off (and, seeded, it gives the same count every run: not flaky).
    covered_identity = covered_query = 0
    for seed in range(200):
        result = synthetic(seed)
        low, high = bootstrap(result, resamples=400, seed=seed).intervals["mAP"]
        covered_identity += low <= 0.42 <= high
        low, high = bootstrap(result, resamples=400, seed=seed, unit="query").intervals["mAP"]
        covered_query += low <= 0.42 <= high
    assert 179 <= covered_identity <= 199
    # Resampling single queries ignores that one identity's queries move together: its
    # intervals are too narrow and miss the truth far more often than 5%.
    assert covered_query < 160


def test_identity_and_query_resampling_differ_where_queries_of_an_identity_agree():
    # 30 identities x 4 queries, every query of an identity with the same AP: resampling
    # queries treats 120 values as independent; there are really 30 (interval ~ 2x wider).
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(30), 4)
    values = np.zeros((120, 5))
    values[:, 0] = 1
    values[:, 1] = rng.uniform(0, 1, 30)[labels]
    result = summarize(values, 1, labels)
    by_identity = bootstrap(result, seed=0).intervals["mAP"]
    by_query = bootstrap(result, seed=0, unit="query").intervals["mAP"]
    ratio = (by_identity[1] - by_identity[0]) / (by_query[1] - by_query[0])
    assert 1.6 < ratio < 2.5
    # With one query per identity the two are the same resampling, draw for draw.
    single = summarize(values[::4], 1, labels[::4])
    assert bootstrap(single, seed=2).intervals == bootstrap(single, seed=2, unit="query").intervals


def test_bootstrap_bad_input():
    result = metrics_of(0)
    with pytest.raises(PlpEvalError, match="resamples must be an integer >= 1, got 0"):
        bootstrap(result, resamples=0)
    with pytest.raises(PlpEvalError, match=r"confidence must be between 0 and 1 \(exclusive\)"):
        bootstrap(result, confidence=1.0)
    with pytest.raises(PlpEvalError, match="unit must be one of identity, query, got 'class'"):
        bootstrap(result, unit="class")
    one = summarize(np.array([[1.0, 1, 1, 1, 1], [2.0, 0.5, 0.5, 0, 0]]), 2, [4, 4])
    with pytest.raises(PlpEvalError, match="needs at least 2 identities with a valid query, got 1"):
        bootstrap(one)
    bare = ReidMetrics(np.ones(1), 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1)
    with pytest.raises(PlpEvalError, match="carry no per-query values"):
        bootstrap(bare)


def identity_differences(a: ReidMetrics, b: ReidMetrics, name: str) -> tuple[np.ndarray, int]:
    """Each identity's summed A - B difference of one metric (by hand), and the queries."""
    valid = a.valid
    difference = direct_columns(a)[name][valid] - direct_columns(b)[name][valid]
    labels = a.query_labels[valid]
    return np.array([difference[labels == k].sum() for k in np.unique(labels)]), int(valid.sum())


def test_compare_with_itself_gives_zero_and_p_one():
    result = metrics_of(2)
    comparison = compare(result, result, permutations=500)
    for name, metric in comparison.metrics.items():
        assert metric.difference == 0.0 and metric.interval == (0.0, 0.0), name
        assert metric.p_value == 1.0 and metric.a == metric.b
    assert comparison.to_dict()["metrics"]["mAP"]["p_value"] == 1.0


def test_p_value_equals_the_enumeration_of_every_sign_flip():
    # 9 identities: 2^9 = 512 <= permutations, so compare enumerates them exactly.
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(9), 3)
    values_a, values_b = np.zeros((27, 5)), np.zeros((27, 5))
    values_a[:, 0] = values_b[:, 0] = 1
    values_a[:, 1] = rng.uniform(0.3, 1.0, 27)
    values_b[:, 1] = np.clip(values_a[:, 1] - rng.normal(0.05, 0.1, 27), 0, 1)
    a, b = summarize(values_a, 1, labels), summarize(values_b, 1, labels)
    comparison = compare(a, b, permutations=10000)
    assert comparison.exact and comparison.permutations == 512
    sums, count = identity_differences(a, b, "mAP")
    observed = abs(sums.sum()) / count
    flips = [abs(np.dot(signs, sums)) / count for signs in itertools.product((1, -1), repeat=9)]
    expected = np.mean([flip >= observed - 1e-12 for flip in flips])
    assert comparison.metrics["mAP"].p_value == expected
    assert 0.0 < expected < 0.2  # a real difference, not a degenerate case
    assert comparison.metrics["mAP"].difference == pytest.approx(
        a.mean_average_precision - b.mean_average_precision, abs=1e-15
    )


def test_random_sign_flips_estimate_the_exact_p_value():
    # 12 identities (4096 patterns): 3000 random flips against the enumeration. The Monte
    # Carlo p-value has sd <= sqrt(0.25 / 3000) ~ 0.009; the tolerance is 4 sd.
    a, b = metrics_of(5), metrics_of(5, noise=2.5, shift=1)
    keep = np.isin(a.query_labels, np.unique(a.query_labels[a.valid])[:12])
    a, b = a.select(keep), b.select(keep)
    exact = compare(a, b, permutations=4096)
    sampled = compare(a, b, permutations=3000, seed=1)
    assert exact.exact and not sampled.exact and exact.num_identities == 12
    for name in ("mAP", "R-precision"):
        assert sampled.metrics[name].p_value == pytest.approx(
            exact.metrics[name].p_value, abs=0.036
        )
    assert exact.metrics["mAP"].p_value < 0.5  # the two runs do differ here


def test_paired_interval_equals_the_loop_implementation():
    a, b = metrics_of(6), metrics_of(6, noise=1.3, shift=2)
    comparison = compare(a, b, resamples=200, permutations=100, seed=3)
    bootstrap_stream = np.random.SeedSequence(3).spawn(2)[0]
    valid = a.valid
    labels = a.query_labels[valid]
    for name in ("mAP", "rank-1", "MAP@R"):
        difference = direct_columns(a)[name][valid] - direct_columns(b)[name][valid]
        rng = np.random.default_rng(bootstrap_stream)
        identities = np.unique(labels)
        statistics = []
        for _ in range(200):
            drawn = identities[rng.integers(len(identities), size=len(identities))]
            statistics.append(np.concatenate([difference[labels == k] for k in drawn]).mean())
        np.testing.assert_allclose(
            comparison.metrics[name].interval, np.quantile(statistics, QUANTILES), rtol=1e-12
        )
    # The paired interval is narrower than either run's own: what they share cancels.
    own = bootstrap(a, resamples=200).intervals["mAP"]
    paired = comparison.metrics["mAP"].interval
    assert paired[1] - paired[0] < own[1] - own[0]


def test_compare_refuses_different_queries():
    a, b = metrics_of(0), metrics_of(1)
    with pytest.raises(PlpEvalError, match="the results rank different queries: their labels"):
        compare(a, b)
    with pytest.raises(PlpEvalError, match="rank different queries: 120 vs 60 queries"):
        compare(a, a.select(np.arange(60)))
    with pytest.raises(PlpEvalError, match="permutations must be an integer >= 1, got 0"):
        compare(a, a, permutations=0)


def test_worked_example_doctest():
    import doctest

    from plp_eval import _bootstrap

    assert doctest.testmod(_bootstrap, raise_on_error=True).attempted >= 3


def test_repeats_summary_against_a_hand_computation():
    from plp_eval import _repeats, summarize_repeats

    values = [0.71, 0.74, 0.70, 0.77]
    summary = summarize_repeats(values)
    mean = sum(values) / 4
    sd = (sum((v - mean) ** 2 for v in values) / 3) ** 0.5
    half = 3.182446305284263 * sd / 2  # t(0.975, 3), from tables
    assert summary.mean == pytest.approx(mean, abs=1e-15)
    assert summary.std == pytest.approx(sd, rel=1e-12)
    assert summary.interval == pytest.approx((mean - half, mean + half), rel=1e-12)
    assert (summary.minimum, summary.maximum) == (0.70, 0.77)
    one = summarize_repeats([0.5])
    assert one.interval is None and one.to_dict()["std"] is None
    with pytest.raises(PlpEvalError, match="values must be finite"):
        summarize_repeats([0.5, float("nan")])
    with pytest.raises(PlpEvalError, match="values must be a non-empty list"):
        summarize_repeats([])
    import doctest

    assert doctest.testmod(_repeats, raise_on_error=True).attempted >= 3
