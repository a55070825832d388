"""Every miner against pytorch-metric-learning's miner of the same name, on tie-free cases."""

import pytest
import torch

import plp_losses
from plp_losses import MINERS, PlpLossesError

pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

DISTANCES = ["euclidean", "squared_euclidean", "cosine"]


def pml_distance(kind):
    if kind == "euclidean":
        return pml_distances.LpDistance(normalize_embeddings=False)
    if kind == "squared_euclidean":
        return pml_distances.LpDistance(normalize_embeddings=False, power=2)
    return pml_distances.CosineSimilarity()


def to_pml(value, kind):
    """A threshold on our distance as PML's: cosine similarity is 1 - our cosine distance."""
    return 1.0 - value if kind == "cosine" else value


def to_pml_range(bounds, kind):
    return None if bounds is None else sorted(to_pml(b, kind) for b in bounds)


def case(seed, n=32, classes=8, ref=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, dtype=torch.float64, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    if not ref:
        return x, y, None, None
    r = torch.randn(ref, 6, dtype=torch.float64, generator=generator)
    return x, y, r, torch.randint(0, classes, (ref,), generator=generator)


def tuples(indices):
    return sorted(zip(*(part.tolist() for part in indices), strict=True))


def split(indices):
    """Pairs as (positive pairs, negative pairs); triplets as one list."""
    if len(indices) == 4:
        return tuples(indices[:2]), tuples(indices[2:])
    return (tuples(indices),)


# (our name and args, the PML class and its args) per case; distance-valued args by kind.
def cases(kind):
    scale = {"euclidean": 1.0, "squared_euclidean": 3.0, "cosine": 0.3}[kind]
    yield "batch_hard", {}, pml_miners.BatchHardMiner, {}
    for pos, neg in [
        ("easy", "semihard"),
        ("hard", "hard"),
        ("semihard", "hard"),
        ("easy", "easy"),
        ("hard", "semihard"),
        ("all", "hard"),
        ("easy", "all"),
        ("all", "all"),
    ]:
        args = {"pos_strategy": pos, "neg_strategy": neg}
        yield "batch_easy_hard", args, pml_miners.BatchEasyHardMiner, args
    ranged = {
        "pos_strategy": "hard",
        "neg_strategy": "hard",
        "allowed_pos_range": [0.2 * scale, 3.0 * scale],
        "allowed_neg_range": [0.5 * scale, 4.0 * scale],
    }
    pml_ranged = dict(ranged)
    for key in ("allowed_pos_range", "allowed_neg_range"):
        pml_ranged[key] = to_pml_range(ranged[key], kind)
    yield "batch_easy_hard", ranged, pml_miners.BatchEasyHardMiner, pml_ranged
    for epsilon in (0.0, 0.1 * scale):
        args = {"epsilon": epsilon}
        yield "multi_similarity", args, pml_miners.MultiSimilarityMiner, args
    margins = {"pos_margin": 2.5 * scale, "neg_margin": 3.5 * scale}
    pml_margins = {key: to_pml(value, kind) for key, value in margins.items()}
    yield "pair_margin", margins, pml_miners.PairMarginMiner, pml_margins
    for kind_of_triplets in ("all", "easy", "semihard", "hard"):
        args = {"margin": 0.5 * scale, "type_of_triplets": kind_of_triplets}
        yield "triplet_margin", args, pml_miners.TripletMarginMiner, args


ALL_CASES = [(kind, *c) for kind in DISTANCES for c in cases(kind)]


@pytest.mark.parametrize("ref", [0, 40], ids=["batch", "reference"])
@pytest.mark.parametrize(
    ("kind", "name", "args", "pml_class", "pml_args"),
    ALL_CASES,
    ids=[f"{c[1]}-{c[0]}-{i}" for i, c in enumerate(ALL_CASES)],
)
def test_miner_gives_the_tuples_of_pml(kind, name, args, pml_class, pml_args, ref):
    ours = MINERS.build(name, distance=kind, **args)
    theirs = pml_class(distance=pml_distance(kind), **pml_args)
    found = 0
    for seed in range(3):
        x, y, r, ry = case(seed, ref=ref)
        mined = ours(x, y, r, ry)
        expected = theirs(x, y, r, ry)
        assert len(mined) == len(expected) == (3 if ours.layout == "triplets" else 4)
        assert all(part.dtype == torch.long for part in mined)
        assert split(mined) == split(expected)
        found += sum(len(part) for part in mined)
    assert found > 0  # the cases are not vacuous


def test_registry_lists_the_five_miners_and_their_layouts():
    assert MINERS.available() == [
        "batch_easy_hard",
        "batch_hard",
        "multi_similarity",
        "pair_margin",
        "triplet_margin",
    ]
    assert MINERS.available(layout="triplets") == ["batch_hard", "triplet_margin"]


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("batch_hard", {"distance": "cosin"}, "unknown distance 'cosin'"),
        ("triplet_margin", {"type_of_triplets": "semi"}, "unknown type_of_triplets 'semi'"),
        ("batch_easy_hard", {"pos_strategy": "semihard", "neg_strategy": "semihard"}, "both"),
        ("batch_easy_hard", {"pos_strategy": "all", "neg_strategy": "semihard"}, "'all'"),
        ("batch_easy_hard", {"allowed_pos_range": [2, 1]}, "low <= high"),
        ("multi_similarity", {"epsilon": -1}, "epsilon = -1: must be >= 0"),
        ("pair_margin", {"margin": 1}, "takes no argument 'margin'"),
        ("nope", {}, "unknown miner 'nope'"),
    ],
)
def test_bad_miner_arguments_say_what_is_wrong(name, args, message):
    with pytest.raises(PlpLossesError, match=message):
        MINERS.build(name, **args)


@pytest.mark.parametrize("name", MINERS.available())
def test_mining_takes_no_gradient_and_returns_indices_in_range(name):
    x, y, _, _ = case(1)
    x.requires_grad_(True)
    mined = MINERS.build(name)(x, y)
    assert all(not part.requires_grad for part in mined)
    assert all(int(part.max()) < len(x) for part in mined if len(part))


def test_miner_on_a_single_class_batch_gives_no_triplet_and_no_negative():
    x, _, _, _ = case(2, n=6)
    y = torch.zeros(6, dtype=torch.long)
    for name in MINERS.available():
        mined = MINERS.build(name, **({"pos_margin": 0.0} if name == "pair_margin" else {}))(x, y)
        assert len(mined[-1]) == 0
        # pair_margin keeps positive pairs whatever the negatives; the others need both sides
        assert (len(mined[0]) == 30) if name == "pair_margin" else len(mined[0]) == 0


@pytest.mark.parametrize("loss", ["center", "arcface", "cross_entropy", "population_triplet"])
def test_a_loss_that_takes_no_tuples_is_refused_in_one_line(loss):
    sized = {"num_classes": 3, "embedding_size": 4} if loss in ("center", "arcface") else {}
    built = plp_losses.build(loss, **sized)
    with pytest.raises(PlpLossesError, match=r"^miner 'batch_hard' needs a pair or triplet loss"):
        plp_losses.check_tuple_loss(built, "miner 'batch_hard'")


def test_triplet_loss_with_its_own_mining_refuses_mined_tuples():
    loss = plp_losses.TripletMarginLoss(mining="batch_hard")
    with pytest.raises(PlpLossesError, match="use mining = 'batch_all'"):
        plp_losses.check_tuple_loss(loss, "miner 'pair_margin'")
    x, y, _, _ = case(3)
    with pytest.raises(PlpLossesError, match="chooses its own triplets"):
        loss(x, y, MINERS.build("batch_hard")(x, y))


def pml_loss_of(name):
    plain = pml_distances.LpDistance(normalize_embeddings=False)
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    return {
        "contrastive": (
            plp_losses.ContrastiveLoss(neg_margin=3.0),
            losses.ContrastiveLoss(neg_margin=3.0, distance=plain),
        ),
        "triplet_margin": (
            plp_losses.TripletMarginLoss(margin=0.5),
            losses.TripletMarginLoss(margin=0.5, distance=plain),
        ),
        "multi_similarity": (plp_losses.MultiSimilarityLoss(), losses.MultiSimilarityLoss()),
        "ntxent": (plp_losses.NTXentLoss(0.5), losses.NTXentLoss(0.5)),
    }[name]


@pytest.mark.parametrize(
    "miner", ["batch_hard", "triplet_margin", "pair_margin", "batch_easy_hard"]
)
@pytest.mark.parametrize("loss", ["contrastive", "triplet_margin", "multi_similarity", "ntxent"])
def test_a_loss_on_mined_tuples_equals_pmls_on_the_same_tuples(miner, loss):
    ours, theirs = pml_loss_of(loss)
    x, y, _, _ = case(4)
    mined = MINERS.build(miner, **({"pos_margin": 2.5} if miner == "pair_margin" else {}))(x, y)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value, expected = ours(a, y, mined), theirs(b, y, mined)
    value.backward()
    expected.backward()
    assert value > 0
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(a.grad, b.grad)
