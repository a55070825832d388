"""Cross-batch memory against pytorch-metric-learning's CrossBatchMemory, save/load, and DDP."""

import importlib
import socket

import pytest
import torch

from plp_losses import (
    MINERS,
    ContrastiveLoss,
    CrossBatchMemory,
    MultiSimilarityLoss,
    NTXentLoss,
    PlpLossesError,
    TripletMarginLoss,
)

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

BATCH, MEMORY, DIM = 8, 20, 6  # the queue wraps around at the third batch


def plain_l2():
    return pml_distances.LpDistance(normalize_embeddings=False)


def setups():
    """(name, our loss, our miner, PML loss, PML miner)."""
    yield (
        "contrastive",
        ContrastiveLoss(neg_margin=3.5),
        None,
        pml_losses.ContrastiveLoss(neg_margin=3.5, distance=plain_l2()),
        None,
    )
    yield (
        "triplet",
        TripletMarginLoss(margin=0.5),
        None,
        pml_losses.TripletMarginLoss(margin=0.5, distance=plain_l2()),
        None,
    )
    yield "ntxent", NTXentLoss(temperature=0.5), None, pml_losses.NTXentLoss(0.5), None
    yield (
        "multi_similarity+miner",
        MultiSimilarityLoss(),
        MINERS.build("multi_similarity"),
        pml_losses.MultiSimilarityLoss(),
        pml_miners.MultiSimilarityMiner(),
    )
    yield (
        "triplet+batch_hard",
        TripletMarginLoss(margin=0.5),
        MINERS.build("batch_hard"),
        pml_losses.TripletMarginLoss(margin=0.5, distance=plain_l2()),
        pml_miners.BatchHardMiner(distance=plain_l2()),
    )
    yield (
        "contrastive+pair_margin",
        ContrastiveLoss(neg_margin=3.5),
        MINERS.build("pair_margin", pos_margin=2.0, neg_margin=3.0),
        pml_losses.ContrastiveLoss(neg_margin=3.5, distance=plain_l2()),
        pml_miners.PairMarginMiner(2.0, 3.0, distance=plain_l2()),
    )
    yield (
        "ntxent+triplet_margin",
        NTXentLoss(0.5),
        MINERS.build("triplet_margin", margin=0.3),
        pml_losses.NTXentLoss(0.5),
        pml_miners.TripletMarginMiner(0.3, distance=plain_l2()),
    )


SETUPS = list(setups())


def batches(count=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        x = torch.randn(BATCH, DIM, dtype=torch.float64, generator=generator)
        yield x, torch.randint(0, 4, (BATCH,), generator=generator)


@pytest.mark.parametrize(
    ("name", "loss", "miner", "pml_loss", "pml_miner"), SETUPS, ids=[s[0] for s in SETUPS]
)
def test_five_batches_give_pmls_values_and_gradients(name, loss, miner, pml_loss, pml_miner):
    ours = CrossBatchMemory(loss, DIM, memory_size=MEMORY, miner=miner)
    theirs = pml_losses.CrossBatchMemory(pml_loss, DIM, memory_size=MEMORY, miner=pml_miner)
    nonzero = 0
    for x, y in batches():
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        value, expected = ours(a, y), theirs(b, y)
        value.backward()
        expected.backward()
        torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)
        nonzero += int(value.item() != 0)
    assert nonzero >= 4
    embeddings, labels = ours.queue
    assert len(labels) == MEMORY and int(ours.seen) == 5 * BATCH
    torch.testing.assert_close(embeddings, theirs.embedding_memory.double())
    assert torch.equal(labels, theirs.label_memory)


def test_the_queue_survives_save_and_load():
    first = CrossBatchMemory(TripletMarginLoss(margin=0.5), DIM, memory_size=MEMORY)
    data = list(batches(count=4))
    for x, y in data[:3]:
        first(x, y)
    restored = CrossBatchMemory(TripletMarginLoss(margin=0.5), DIM, memory_size=MEMORY)
    restored.load_state_dict(first.state_dict())
    assert int(restored.seen) == 3 * BATCH and int(restored.iteration) == 3
    x, y = data[3]
    torch.testing.assert_close(restored(x, y), first(x, y))
    torch.testing.assert_close(restored.queue[0], first.queue[0])


def test_warm_up_and_eval_mode_leave_the_queue_alone():
    loss = TripletMarginLoss(margin=0.5)
    memory = CrossBatchMemory(loss, DIM, memory_size=MEMORY, start_iteration=2)
    data = list(batches(count=3))
    for x, y in data[:2]:  # warm-up: the plain loss of the batch
        torch.testing.assert_close(memory(x, y), loss(x, y))
    assert int(memory.seen) == 0
    memory.eval()
    x, y = data[2]
    torch.testing.assert_close(memory(x, y), loss(x, y))
    assert int(memory.seen) == 0 and int(memory.iteration) == 2
    memory.train()
    memory(x, y)
    assert int(memory.seen) == BATCH


def test_bad_uses_say_what_is_wrong():
    with pytest.raises(PlpLossesError, match=r"^cross-batch memory needs a pair or triplet loss"):
        CrossBatchMemory(torch.nn.MSELoss(), DIM)
    with pytest.raises(PlpLossesError, match="use mining = 'batch_all'"):
        CrossBatchMemory(TripletMarginLoss(mining="batch_hard"), DIM)
    memory = CrossBatchMemory(TripletMarginLoss(), DIM, memory_size=4)
    x, y = next(batches())
    with pytest.raises(PlpLossesError, match="cannot hold a batch of 8"):
        memory(x, y)
    with pytest.raises(PlpLossesError, match="holds 6-dimensional embeddings, got 3"):
        memory(x[:, :3], y)


# Written to a file for the spawned processes to import (test modules are not importable).
DISTRIBUTED_WORKER = """
import torch
import torch.distributed as dist

from plp_losses import CrossBatchMemory, ContrastiveLoss


def batch(rank):
    generator = torch.Generator().manual_seed(rank)
    size = 4 + rank  # unequal batch sizes on purpose
    labels = torch.randint(0, 3, (size,), generator=generator)
    return torch.randn(size, 3, generator=generator), labels


def run(rank, world, port, path):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        memory = CrossBatchMemory(ContrastiveLoss(), 3, memory_size=32)
        x, y = batch(rank)
        x.requires_grad_(True)
        value = memory(x, y)
        value.backward()
        embeddings, labels = memory.queue
        torch.save({"embeddings": embeddings, "labels": labels, "value": value.detach(),
                    "grad": x.grad}, f"{path}/{rank}.pt")
    finally:
        dist.destroy_process_group()
"""


@pytest.mark.slow
def test_under_two_processes_the_queue_holds_both_batches(tmp_path, monkeypatch):
    (tmp_path / "plp_losses_xbm_worker.py").write_text(DISTRIBUTED_WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    worker = importlib.import_module("plp_losses_xbm_worker")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(worker.run, args=(2, port, str(tmp_path)), nprocs=2)
    parts = [worker.batch(rank) for rank in range(2)]
    expected = torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
    results = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]
    for rank, result in enumerate(results):
        torch.testing.assert_close(result["embeddings"], expected[0])
        assert torch.equal(result["labels"], expected[1])
        # Each rank's loss is its own batch against the whole queue, its own copies left out.
        x, y = parts[rank]
        x = x.clone().requires_grad_(True)
        # One process with a queue of exactly both batches: the other rank's batch in its
        # slots, then this batch written where the queue's position says (rank order).
        single = CrossBatchMemory(ContrastiveLoss(), 3, memory_size=9)
        other = slice(4, 9) if rank == 0 else slice(0, 4)
        single.embedding_memory[other], single.label_memory[other] = parts[1 - rank]
        single.seen += 9 if rank == 0 else 4
        value = single(x, y)
        value.backward()
        torch.testing.assert_close(result["value"], value.detach())
        torch.testing.assert_close(result["grad"], x.grad)
