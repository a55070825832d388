import math

import pytest
import torch

import plp_losses
from plp_losses import (
    ArcFaceLoss,
    CenterLoss,
    ContrastiveLoss,
    MultiSimilarityLoss,
    NTXentLoss,
    PlpLossesError,
    PopulationBasedTripletLoss,
    build,
)

DISTANCES = ["euclidean", "squared_euclidean", "cosine"]
LABELS = [0, 0, 1, 1, 1, 2, 2, 3]


def distance(a, b, kind):
    if kind == "euclidean":
        return torch.sqrt(((a - b) ** 2).sum())
    if kind == "squared_euclidean":
        return ((a - b) ** 2).sum()
    return 1 - (a @ b) / (a.norm() * b.norm())


def batch(seed=0):
    torch.manual_seed(seed)
    return torch.randn(len(LABELS), 5, dtype=torch.float64, requires_grad=True), torch.tensor(
        LABELS
    )


def assert_same_value_and_gradient(ours, expected, x):
    (g_ours,) = torch.autograd.grad(ours, x, retain_graph=True)
    (g_expected,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(g_ours, g_expected)


def population_reference(x, y, margin, kind, negatives):
    n, terms = len(y), []
    classes = sorted(set(y))
    centroid = {c: torch.stack([x[j] for j in range(n) if y[j] == c]).mean(0) for c in classes}
    for i in range(n):
        others = [x[j] for j in range(n) if j != i and y[j] == y[i]]
        if not others or len(classes) < 2:
            continue
        d_ap = distance(x[i], torch.stack(others).mean(0), kind)
        d_k = [distance(x[i], centroid[c], kind) for c in classes if c != y[i]]
        d_an = min(d_k) if negatives == "nearest" else sum(d_k) / len(d_k)
        terms.append(torch.clamp(d_ap - d_an + margin, min=0))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("kind", DISTANCES)
@pytest.mark.parametrize("negatives", ["nearest", "all"])
def test_population_triplet_equals_brute_force(kind, negatives):
    x, y = batch()
    margin = 0.5 if kind == "cosine" else 2.0  # keep some hinges active
    ours = PopulationBasedTripletLoss(margin=margin, distance=kind, negatives=negatives)(x, y)
    expected = population_reference(x, y.tolist(), margin, kind, negatives)
    assert expected > 0
    assert_same_value_and_gradient(ours, expected, x)


def contrastive_reference(x, y, pos_margin, neg_margin, kind):
    pos, neg = [], []
    for i in range(len(y)):
        for j in range(len(y)):
            if i == j:
                continue
            d = distance(x[i], x[j], kind)
            if y[i] == y[j]:
                pos.append(torch.clamp(d - pos_margin, min=0))
            else:
                neg.append(torch.clamp(neg_margin - d, min=0))

    def mean_nonzero(values):
        kept = [v for v in values if v > 0]
        return torch.stack(kept).mean() if kept else x.sum() * 0

    return mean_nonzero(pos) + mean_nonzero(neg)


@pytest.mark.parametrize("kind", DISTANCES)
def test_contrastive_equals_brute_force(kind):
    x, y = batch()
    neg_margin = 1.0 if kind == "cosine" else 3.0
    ours = ContrastiveLoss(pos_margin=0.1, neg_margin=neg_margin, distance=kind)(x, y)
    expected = contrastive_reference(x, y.tolist(), 0.1, neg_margin, kind)
    assert_same_value_and_gradient(ours, expected, x)


def multi_similarity_reference(x, y, alpha, beta, base, kind):
    terms = []
    for i in range(len(y)):
        pos = [
            torch.exp(-alpha * (1 - distance(x[i], x[j], kind) - base))
            for j in range(len(y))
            if j != i and y[j] == y[i]
        ]
        neg = [
            torch.exp(beta * (1 - distance(x[i], x[j], kind) - base))
            for j in range(len(y))
            if y[j] != y[i]
        ]
        term = torch.log(1 + sum(pos, x.sum() * 0)) / alpha
        terms.append(term + torch.log(1 + sum(neg, x.sum() * 0)) / beta)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("kind", DISTANCES)
def test_multi_similarity_equals_brute_force(kind):
    x, y = batch()
    scale = 1.0 if kind == "cosine" else 0.3  # keep exp() of the reference finite
    with torch.no_grad():
        x.mul_(scale)
    ours = MultiSimilarityLoss(alpha=2, beta=10, base=0.5, distance=kind)(x, y)
    expected = multi_similarity_reference(x, y.tolist(), 2, 10, 0.5, kind)
    assert_same_value_and_gradient(ours, expected, x)


def ntxent_reference(x, y, t, kind):
    terms = []
    for a in range(len(y)):
        for p in range(len(y)):
            if a == p or y[a] != y[p]:
                continue
            s_ap = torch.exp((1 - distance(x[a], x[p], kind)) / t)
            negs = [
                torch.exp((1 - distance(x[a], x[n], kind)) / t)
                for n in range(len(y))
                if y[n] != y[a]
            ]
            terms.append(-torch.log(s_ap / (s_ap + sum(negs, x.sum() * 0))))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("kind", DISTANCES)
def test_ntxent_equals_brute_force(kind):
    x, y = batch()
    t = 0.5 if kind == "cosine" else 5.0
    ours = NTXentLoss(temperature=t, distance=kind)(x, y)
    assert_same_value_and_gradient(ours, ntxent_reference(x, y.tolist(), t, kind), x)


@pytest.mark.parametrize("kind", DISTANCES)
def test_center_equals_brute_force(kind):
    x, y = batch()
    loss = CenterLoss(num_classes=4, embedding_size=5, distance=kind).double()
    ours = loss(x, y)
    expected = sum(0.5 * distance(x[i], loss.centers[y[i]], kind) for i in range(len(y))) / len(y)
    assert_same_value_and_gradient(ours, expected, x)
    (grad,) = torch.autograd.grad(loss(x, y), loss.centers)
    assert grad[0].abs().sum() > 0  # the centres learn


def test_arcface_equals_brute_force():
    x, y = batch()
    loss = ArcFaceLoss(num_classes=4, embedding_size=5, margin=20.0, scale=8.0).double()
    m = math.radians(20.0)
    terms = []
    for i in range(len(y)):
        logits = []
        for j in range(4):
            w = loss.weight[j]
            cos = (x[i] @ w) / (x[i].norm() * w.norm())
            logits.append(8.0 * (torch.cos(torch.acos(cos) + m) if j == y[i] else cos))
        terms.append(-torch.log_softmax(torch.stack(logits), 0)[y[i]])
    assert_same_value_and_gradient(loss(x, y), torch.stack(terms).mean(), x)


def test_matches_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.distances import LpDistance

    torch.manual_seed(1)
    x, y = torch.randn(32, 16), torch.randint(0, 6, (32,))
    plain_l2 = LpDistance(normalize_embeddings=False)
    pairs = [
        (ContrastiveLoss(), pml.ContrastiveLoss(distance=plain_l2)),
        (ContrastiveLoss(0.5, 6.0), pml.ContrastiveLoss(0.5, 6.0, distance=plain_l2)),
        (MultiSimilarityLoss(), pml.MultiSimilarityLoss()),
        (MultiSimilarityLoss(1.0, 20.0, 0.3), pml.MultiSimilarityLoss(1.0, 20.0, 0.3)),
        (NTXentLoss(), pml.NTXentLoss()),
        (NTXentLoss(0.5), pml.NTXentLoss(0.5)),
    ]
    for ours, theirs in pairs:
        assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), abs=1e-5, rel=1e-5)
    theirs = pml.ArcFaceLoss(num_classes=6, embedding_size=16)
    ours = ArcFaceLoss(num_classes=6, embedding_size=16)
    with torch.no_grad():
        ours.weight.copy_(theirs.W.T)
    assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), abs=1e-5, rel=1e-5)


@pytest.mark.parametrize(
    "loss",
    [
        PopulationBasedTripletLoss(),
        ContrastiveLoss(),
        MultiSimilarityLoss(),
        NTXentLoss(),
        CenterLoss(2, 3, distance="euclidean"),
        ArcFaceLoss(2, 3),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_coinciding_embeddings_and_large_values_give_finite_gradients(loss):
    labels = torch.tensor([0, 0, 1, 1])
    for x in (
        torch.ones(4, 3),
        torch.tensor([[1e4, 0, 0], [1e4, 0, 0], [-1e4, 0, 0], [0, 1e4, 0]]),  # large norms
    ):
        x = x.clone().requires_grad_(True)
        if isinstance(loss, CenterLoss):
            with torch.no_grad():
                loss.centers.copy_(x[:2])
        value = loss(x, labels)
        (grad,) = torch.autograd.grad(value, x)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_no_valid_pair_gives_a_zero_with_a_graph():
    x = torch.randn(3, 4, requires_grad=True)
    for loss in (PopulationBasedTripletLoss(), NTXentLoss(), ContrastiveLoss(neg_margin=0)):
        for labels in (torch.tensor([0, 1, 2]), torch.tensor([5, 5, 5])):
            if isinstance(loss, PopulationBasedTripletLoss) or labels[0] != labels[1]:
                value = loss(x, labels)
                assert value.item() == 0 and value.requires_grad
                (grad,) = torch.autograd.grad(value, x)
                assert (grad == 0).all()


def test_bad_arguments_raise():
    with pytest.raises(PlpLossesError, match="unknown negatives 'some'"):
        PopulationBasedTripletLoss(negatives="some")
    with pytest.raises(PlpLossesError, match="unknown distance 'l1'"):
        PopulationBasedTripletLoss(distance="l1")
    with pytest.raises(PlpLossesError, match="margin must be >= 0"):
        PopulationBasedTripletLoss(margin=-0.1)
    with pytest.raises(PlpLossesError, match="unknown distance 'l1'"):
        ContrastiveLoss(distance="l1")
    with pytest.raises(PlpLossesError, match="alpha and beta must be > 0"):
        MultiSimilarityLoss(alpha=0)
    with pytest.raises(PlpLossesError, match="temperature must be finite and > 0"):
        NTXentLoss(temperature=0)
    with pytest.raises(PlpLossesError, match="num_classes and embedding_size must be >= 1"):
        ArcFaceLoss(0, 3)
    with pytest.raises(PlpLossesError, match="unknown distance 'l1'"):
        CenterLoss(2, 3, distance="l1")
    with pytest.raises(PlpLossesError, match=r"labels must be in \[0, 2\), got \[0, 2\]"):
        CenterLoss(2, 3)(torch.randn(2, 3), torch.tensor([0, 2]))
    with pytest.raises(PlpLossesError, match="embeddings must be 2-D"):
        ArcFaceLoss(2, 3)(torch.randn(3), torch.tensor([0, 1, 1]))
    with pytest.raises(PlpLossesError, match="unknown distance 'l1'"):
        plp_losses._distances.rowwise_distance(torch.ones(1, 1), torch.ones(1, 1), "l1")


def test_experimental_flag():
    assert plp_losses.is_experimental("population_triplet")
    assert not plp_losses.is_experimental("triplet_margin")
    assert PopulationBasedTripletLoss.experimental
    assert "Experimental" in (PopulationBasedTripletLoss.__doc__ or "")
    with pytest.raises(PlpLossesError, match="unknown loss 'nope'"):
        plp_losses.is_experimental("nope")


def test_registry_names_and_takes():
    assert plp_losses.available() == sorted(
        [
            "arcface",
            "center",
            "contrastive",
            "cross_entropy",
            "multi_similarity",
            "ntxent",
            "population_triplet",
            "triplet_margin",
        ]
    )
    for name in plp_losses.available():
        expected = "logits" if name == "cross_entropy" else "embeddings"
        assert plp_losses.registered(name).takes == expected
    assert type(build("contrastive", neg_margin=2.0)) is ContrastiveLoss
