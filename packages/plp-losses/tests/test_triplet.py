import itertools
import math

import pytest
import torch

import plp_losses
from plp_losses import PlpLossesError, TripletMarginLoss, build, pairwise_distance

DISTANCES = ["euclidean", "squared_euclidean", "cosine"]


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "euclidean":
        return torch.sqrt(((a - b) ** 2).sum())
    if kind == "squared_euclidean":
        return ((a - b) ** 2).sum()
    return 1 - (a @ b) / (a.norm() * b.norm())


def hinge(x: torch.Tensor, margin: float, soft: bool) -> torch.Tensor:
    return torch.nn.functional.softplus(x) if soft else torch.clamp(x + margin, min=0)


def reference(x, y, margin, mining, kind, soft):
    """Explicit loops over all anchors, positives and negatives."""
    n = len(y)
    d = [[distance(x[i], x[j], kind) for j in range(n)] for i in range(n)]
    terms = []
    if mining == "batch_all":
        for a, p, q in itertools.product(range(n), repeat=3):
            if a != p and y[a] == y[p] and y[q] != y[a]:
                terms.append(hinge(d[a][p] - d[a][q], margin, soft))
        positive = [t for t in terms if t > 0]
        return torch.stack(positive).mean() if positive else x.sum() * 0
    if mining == "batch_hard":
        for a in range(n):
            pos = [d[a][p] for p in range(n) if p != a and y[p] == y[a]]
            neg = [d[a][q] for q in range(n) if y[q] != y[a]]
            if pos and neg:
                terms.append(hinge(max(pos) - min(neg), margin, soft))
        return torch.stack(terms).mean() if terms else x.sum() * 0
    for a, p in itertools.product(range(n), repeat=2):
        if a == p or y[a] != y[p]:
            continue
        neg = [d[a][q] for q in range(n) if y[q] != y[a]]
        if not neg:
            continue
        farther = [v for v in neg if v > d[a][p]]
        chosen = min(farther) if farther else max(neg)
        terms.append(hinge(d[a][p] - chosen, margin, soft))
    return torch.stack(terms).mean() if terms else x.sum() * 0


@pytest.mark.parametrize("kind", DISTANCES)
@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
@pytest.mark.parametrize("soft", [False, True])
def test_equals_brute_force_in_value_and_gradient(kind, mining, soft):
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])
    x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    ours = TripletMarginLoss(margin=0.3, mining=mining, distance=kind, soft_margin=soft)(x, labels)
    (grad_ours,) = torch.autograd.grad(ours, x)
    expected = reference(x, labels.tolist(), 0.3, mining, kind, soft)
    (grad_expected,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(grad_ours, grad_expected)


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard"])
def test_matches_pytorch_metric_learning(mining):
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    miners = pytest.importorskip("pytorch_metric_learning.miners")
    torch.manual_seed(1)
    x = torch.randn(32, 16)
    y = torch.randint(0, 6, (32,))
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import MeanReducer

    ours = TripletMarginLoss(margin=0.2, mining=mining)(x, y)
    plain_l2 = LpDistance(normalize_embeddings=False)  # PML normalises by default; we do not
    if mining == "batch_all":
        theirs = pml_losses.TripletMarginLoss(margin=0.2, distance=plain_l2)(x, y)
    else:
        loss = pml_losses.TripletMarginLoss(margin=0.2, distance=plain_l2, reducer=MeanReducer())
        theirs = loss(x, y, miners.BatchHardMiner(distance=plain_l2)(x, y))
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


def test_coinciding_embeddings_give_finite_gradients():
    x = torch.ones(4, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    for mining in ("batch_all", "batch_hard", "semi_hard"):
        loss = TripletMarginLoss(mining=mining)(x, labels)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all() and loss.item() == pytest.approx(0.2)
    d = pairwise_distance(x)
    (grad,) = torch.autograd.grad(d.sum(), x)
    assert torch.isfinite(grad).all() and (d == 0).all()


def test_no_valid_triplet_gives_a_zero_with_a_graph():
    x = torch.randn(3, 4, requires_grad=True)
    for labels in (torch.tensor([0, 1, 2]), torch.tensor([5, 5, 5])):
        for mining in ("batch_all", "batch_hard", "semi_hard"):
            loss = TripletMarginLoss(mining=mining)(x, labels)
            assert loss.item() == 0 and loss.requires_grad
            (grad,) = torch.autograd.grad(loss, x)
            assert (grad == 0).all()


def test_pairwise_distance_matches_cdist():
    torch.manual_seed(2)
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(pairwise_distance(a, b), torch.cdist(a, b))
    torch.testing.assert_close(pairwise_distance(a, b, "squared_euclidean"), torch.cdist(a, b) ** 2)
    cosine = 1 - torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=2)
    torch.testing.assert_close(pairwise_distance(a, b, "cosine"), cosine)


def test_bad_input_raises_clear_errors():
    loss = TripletMarginLoss()
    with pytest.raises(PlpLossesError, match=r"embeddings must be 2-D"):
        loss(torch.randn(4), torch.zeros(4))
    with pytest.raises(PlpLossesError, match=r"labels must be 1-D"):
        loss(torch.randn(4, 2), torch.zeros(4, 1))
    with pytest.raises(PlpLossesError, match=r"4 embeddings but 3 labels"):
        loss(torch.randn(4, 2), torch.zeros(3))
    with pytest.raises(PlpLossesError, match=r"1 rows with NaN or inf"):
        loss(torch.tensor([[0.0, math.nan], [1.0, 1.0]]), torch.tensor([0, 1]))
    with pytest.raises(PlpLossesError, match=r"unknown mining 'hard'; available: batch_all"):
        TripletMarginLoss(mining="hard")
    with pytest.raises(PlpLossesError, match=r"unknown distance 'l1'"):
        TripletMarginLoss(distance="l1")
    with pytest.raises(PlpLossesError, match=r"unknown distance 'l1'"):
        pairwise_distance(torch.randn(2, 2), distance="l1")
    with pytest.raises(PlpLossesError, match="margin must be >= 0"):
        TripletMarginLoss(margin=-1)


def test_registry():
    assert {"cross_entropy", "triplet_margin"} <= set(plp_losses.available())
    with pytest.raises(
        PlpLossesError, match=r"unknown loss 'tripplet'; available: .*triplet_margin"
    ):
        build("tripplet")
    with pytest.raises(PlpLossesError, match="already registered"):
        plp_losses.register("triplet_margin")(TripletMarginLoss)
    with pytest.raises(
        PlpLossesError,
        match=r"loss 'triplet_margin' takes no argument 'margn' \(did you mean 'margin'\?\); "
        r"it takes: margin, mining, distance, soft_margin",
    ):
        build("triplet_margin", margn=0.1)


@pytest.mark.parametrize("name", plp_losses.available())
def test_every_registered_loss_builds_and_runs(name):
    torch.manual_seed(3)
    sized = {"center", "arcface"}
    loss = build(name, num_classes=3, embedding_size=8) if name in sized else build(name)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    inputs = torch.randn(6, 8, requires_grad=True)
    value = loss(inputs if loss.takes == "embeddings" else inputs[:, :3], labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert inputs.grad is not None


def test_cross_entropy_matches_torch():
    torch.manual_seed(4)
    logits, labels = torch.randn(5, 4), torch.randint(0, 4, (5,))
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(
        build("cross_entropy", label_smoothing=0.1)(logits, labels), expected
    )
    with pytest.raises(PlpLossesError, match="label_smoothing"):
        build("cross_entropy", label_smoothing=1.0)
    with pytest.raises(PlpLossesError, match="takes logits"):
        build("cross_entropy")(torch.randn(5), labels)


def test_public_api_is_exactly_all():
    public = {name for name in dir(plp_losses) if not name.startswith("_")}
    assert public == set(plp_losses.__all__)
