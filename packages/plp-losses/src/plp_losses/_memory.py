"""Cross-batch memory (XBM): the batch against a queue of past embeddings (Wang et al. 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.distributed as dist
from torch import nn

from plp_core import NonNegativeInt, PositiveInt
from plp_losses._errors import PlpLossesError
from plp_losses._inputs import check_inputs
from plp_losses._miners import Miner
from plp_losses._tuples import IndicesTuple, check_tuple_loss

__all__ = ["CrossBatchMemory"]


class CrossBatchMemory(nn.Module):
    """Wraps a pair or triplet loss so the batch is compared with a queue of past batches.

    Each training call (Wang et al. 2020, "Cross-Batch Memory for Embedding Learning", as
    pytorch-metric-learning's ``CrossBatchMemory``):

    1. the batch's embeddings and labels, detached, enter a FIFO queue of ``memory_size``
       entries (the oldest leave); under ``torch.distributed`` the batches of all processes
       enter it, in rank order, so every process holds the same queue;
    2. the tuples are the ``miner``'s, of the batch (anchors) against the queue, or every pair
       of the batch against the queue; pairs of an embedding with its own copy in the queue
       are removed;
    3. the result is ``loss(embeddings, labels, tuples, queue embeddings, queue labels)``: the
       gradient flows through the batch only, never through the queue.

    Before ``start_iteration`` training calls (XBM's warm-up, while the embeddings still drift
    fast) and in eval mode, the queue is left alone and the result is the plain loss of the
    batch (with the miner's tuples). The queue, its position and the call count are buffers:
    they are saved in a ``state_dict`` (a checkpoint), so a resumed run continues exactly.

    Args:
        loss: A pair or triplet loss (contrastive, multi_similarity, ntxent, triplet_margin).
        embedding_size: Size ``D`` of the embeddings.
        memory_size: Entries the queue holds (at least the batch size times the processes).
        miner: Chooses the tuples (None: every pair).
        start_iteration: Training calls before the queue is used.

    Raises:
        PlpLossesError: ``loss`` takes no mined tuples, or a size is not positive.
    """

    takes: ClassVar[str] = "embeddings"
    embedding_memory: torch.Tensor
    label_memory: torch.Tensor
    seen: torch.Tensor
    iteration: torch.Tensor

    def __init__(
        self,
        loss: nn.Module,
        embedding_size: PositiveInt,
        memory_size: PositiveInt = 1024,
        miner: Miner | None = None,
        start_iteration: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        self.loss = check_tuple_loss(loss, "cross-batch memory")
        if embedding_size < 1 or memory_size < 1 or start_iteration < 0:
            raise PlpLossesError(
                f"embedding_size and memory_size must be >= 1 and start_iteration >= 0, got "
                f"{embedding_size}, {memory_size} and {start_iteration}"
            )
        self.miner = miner
        self.embedding_size, self.memory_size = int(embedding_size), int(memory_size)
        self.start_iteration = int(start_iteration)
        self.register_buffer("embedding_memory", torch.zeros(memory_size, embedding_size))
        self.register_buffer("label_memory", torch.zeros(memory_size, dtype=torch.long))
        # Entries ever enqueued (the write position is seen % memory_size) and training calls.
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def reset_queue(self) -> None:
        """Empty the queue (the call count stays)."""
        self.embedding_memory.zero_()
        self.label_memory.zero_()
        self.seen.zero_()

    @property
    def queue(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled part of the queue: ``(embeddings, labels)`` in slot order."""
        filled = min(int(self.seen), self.memory_size)
        return self.embedding_memory[:filled], self.label_memory[:filled]

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the loss of the batch ``embeddings`` ``(N, D)`` against the queue."""
        check_inputs(embeddings, labels)
        if embeddings.shape[1] != self.embedding_size:
            raise PlpLossesError(
                f"cross-batch memory holds {self.embedding_size}-dimensional embeddings, "
                f"got {embeddings.shape[1]}"
            )
        if not self.training or int(self.iteration) < self.start_iteration:
            if self.training:
                self.iteration += 1
            mined = None if self.miner is None else self.miner(embeddings, labels)
            return self.loss(embeddings, labels, mined)
        self.iteration += 1
        own_slots = self._enqueue(embeddings.detach(), labels)
        memory, memory_labels = self.queue
        memory = memory.to(embeddings.dtype)
        # The queue holds checked embeddings: skip the loss's input checks of M rows.
        if self.miner is None:  # every pair: the loss's masks, without index tuples
            return self.loss.compute(
                embeddings, labels, None, memory, memory_labels, own_copies=own_slots
            )
        indices = self.miner(embeddings, labels, memory, memory_labels)
        indices = _without_own_copies(indices, own_slots)
        return self.loss.compute(embeddings, labels, indices, memory, memory_labels)

    def _enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Write every process's batch into the queue; return this batch's slots."""
        gathered, gathered_labels, offset = _gather(embeddings, labels)
        if len(gathered) > self.memory_size:
            raise PlpLossesError(
                f"cross-batch memory of {self.memory_size} entries cannot hold a batch of "
                f"{len(gathered)} (all processes): raise memory_size"
            )
        wider = torch.promote_types(self.embedding_memory.dtype, gathered.dtype)
        if wider != self.embedding_memory.dtype:  # float64 batches keep float64 copies
            self.embedding_memory = self.embedding_memory.to(wider)
        start = int(self.seen) % self.memory_size
        slots = (
            torch.arange(start, start + len(gathered), device=self.label_memory.device)
            % self.memory_size
        )
        self.embedding_memory[slots] = gathered.to(self.embedding_memory)
        self.label_memory[slots] = gathered_labels.to(self.label_memory)
        self.seen += len(gathered)
        return slots[offset : offset + len(embeddings)].to(labels.device)


def _without_own_copies(indices: IndicesTuple, own_slots: torch.Tensor) -> IndicesTuple:
    """Drop the positive pairs ``(i, own_slots[i])``: an embedding against its own copy."""
    anchor, positive = indices[0], indices[1]
    keep = positive != own_slots[anchor]
    if len(indices) == 3:
        return anchor[keep], positive[keep], indices[2][keep]
    return anchor[keep], positive[keep], indices[2], indices[3]


def _gather(
    embeddings: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return every process's ``(embeddings, labels)`` in rank order and this one's offset.

    Batches of different sizes are padded to the largest for ``all_gather``, then cut back.
    Outside ``torch.distributed`` (or with one process) the batch itself and offset 0.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings, labels, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([len(labels)], device=labels.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    largest = max(counts)
    padded = embeddings.new_zeros(largest, embeddings.shape[1])
    padded[: len(embeddings)] = embeddings
    padded_labels = labels.new_zeros(largest)
    padded_labels[: len(labels)] = labels
    all_embeddings = [torch.zeros_like(padded) for _ in range(world)]
    all_labels = [torch.zeros_like(padded_labels) for _ in range(world)]
    dist.all_gather(all_embeddings, padded.contiguous())
    dist.all_gather(all_labels, padded_labels.contiguous())
    return (
        torch.cat([part[:count] for part, count in zip(all_embeddings, counts, strict=True)]),
        torch.cat([part[:count] for part, count in zip(all_labels, counts, strict=True)]),
        sum(counts[:rank]),
    )
