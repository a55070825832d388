"""The LightningModule that trains any backbone + head with losses from plp-losses."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

import plp_losses
from plp_core import DEFAULT_MODEL, PositiveInt
from plp_models._backbones import build_backbone
from plp_models._errors import PlpModelsError
from plp_models._heads import build_head
from plp_models._methods import (
    Teacher,
    build_distillation,
    build_loss_term,
    check_distillation,
)
from plp_models._optim import build_optimizer, build_scheduler
from plp_models._validation import RetrievalValidation

__all__ = ["NetworkModel", "PlpModel"]

DEFAULT_LOSSES: tuple[dict[str, Any], ...] = ({**DEFAULT_MODEL["loss"], "weight": 1.0},)


def _takes(loss: str) -> str:
    """What the loss registered as ``loss`` takes: ``"embeddings"`` or ``"logits"``."""
    return str(getattr(plp_losses.registered(loss), "takes", "embeddings"))


class PlpModel(pl.LightningModule):
    """Backbone + head trained with a weighted sum of plp-losses losses.

    Every argument is a plain value (names and dicts), saved with ``save_hyperparameters`` so a
    checkpoint alone rebuilds the model (``PlpModel.load_from_checkpoint(path)``).

    A loss whose class says ``takes = "logits"`` (cross-entropy) is fed the classifier's logits;
    any other is fed the embedding. The classifier exists only when some loss takes logits.
    Losses with learnable parameters that accept ``num_classes`` / ``embedding_size`` (ArcFace,
    centre loss) get them filled in from the model unless given. A pair or triplet loss term may
    name a ``miner`` and a cross-batch ``memory`` (see :mod:`plp_models._methods`).

    With ``distillation`` and a teacher attached (:meth:`attach_teacher`; not a hyper-parameter:
    the train pipeline loads it), each training batch also adds ``weight`` times the
    distillation loss between the student's evaluation features and the frozen teacher's on the
    same (augmented) images. The loss's own parameters (``embedding_mse``'s projection) train
    with the model and stay in its checkpoint; :meth:`embed` and exports never use them.

    With :attr:`retrieval_validation` set (a :class:`~plp_models.RetrievalValidation`; not a
    hyper-parameter: the train pipeline sets it from the run's protocol), validation also ranks
    the validation images' evaluation features and logs ``val/mAP``, ``val/rank1``, ... once
    per validation epoch.

    Args:
        num_classes: Number of classes in the training data.
        in_channels: Channels of the input images.
        image_size: Height and width of the input images.
        backbone: ``{"name": ..., "args": {...}}`` for :func:`plp_models.build_backbone`.
        head: ``{"name": ..., "args": {...}}`` for :func:`plp_models.build_head`.
        embedding_size: Size of the embedding.
        losses: Sequence of ``{"name": ..., "weight": 1.0, "args": {...}}``.
        optimizer: ``{"name": "adam" | "adamw" | "sgd", "args": {...}}``.
        scheduler: ``{"name": "none" | "cosine" | "step" | "one_cycle", "args": {...}}``;
            ``args`` may hold ``warmup_epochs``.
        distillation: ``{"loss": "embedding_mse" | "relational", "weight": 1.0,
            "teacher_size": ...}`` (None: no distillation).
    """

    retrieval_validation: RetrievalValidation | None = None

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: Sequence[int] = (32, 32),
        backbone: Mapping[str, Any] | None = None,
        head: Mapping[str, Any] | None = None,
        embedding_size: PositiveInt = DEFAULT_MODEL["embedding_size"],
        losses: Sequence[Mapping[str, Any]] = DEFAULT_LOSSES,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        distillation: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        backbone = copy.deepcopy(dict(backbone or DEFAULT_MODEL["backbone"]))
        head = copy.deepcopy(dict(head or DEFAULT_MODEL["head"]))
        optimizer = copy.deepcopy(dict(optimizer or DEFAULT_MODEL["optimizer"]))
        scheduler = copy.deepcopy(dict(scheduler or DEFAULT_MODEL["scheduler"]))
        losses = [dict(spec) for spec in losses]
        if not losses:
            raise PlpModelsError("losses: at least one loss is needed")
        self.save_hyperparameters(
            {
                "num_classes": num_classes,
                "in_channels": in_channels,
                "image_size": list(image_size),
                "backbone": backbone,
                "head": head,
                "embedding_size": embedding_size,
                "losses": losses,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "distillation": None if distillation is None else check_distillation(distillation),
            }
        )
        needs_logits = any(_takes(spec["name"]) == "logits" for spec in losses)
        self.backbone = build_backbone(
            backbone["name"],
            in_channels=in_channels,
            image_size=tuple(image_size),
            **backbone.get("args", {}),
        )
        self.head = build_head(
            head["name"],
            in_features=self.backbone.out_features,
            embedding_size=embedding_size,
            num_classes=num_classes if needs_logits else 0,
            **head.get("args", {}),
        )
        # The losses see the head's embedding: its width, not embedding_size, sizes them.
        self._set_up_training(losses, num_classes, self.head.out_features)
        self._set_up_distillation(self.hparams["distillation"], self.head.out_features)

    def _set_up_training(
        self, losses: Sequence[Mapping[str, Any]], num_classes: int, embedding_size: int
    ) -> bool:
        """Build the losses and accuracy metrics; return whether a loss takes logits."""
        self.loss_weights = [float(spec.get("weight", 1.0)) for spec in losses]
        self.losses = nn.ModuleList(
            [self._build_loss(spec, num_classes, embedding_size) for spec in losses]
        )
        needs_logits = any(getattr(loss, "takes", "embeddings") == "logits" for loss in self.losses)
        self.has_classifier = needs_logits
        self._train_loss_sum = torch.zeros(())
        self._train_count = 0
        if needs_logits:
            self.train_accuracy = MulticlassAccuracy(num_classes, average="micro")
            self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        return needs_logits

    def embedding_and_logits(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(embedding for the metric losses, logits or None)`` of ``images``."""
        return self.head(self.backbone(images))

    def outputs_and_features(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Return ``(embedding, logits or None, evaluation features)`` from one backbone pass."""
        features = self.backbone(images)
        embedding, logits = self.head(features)
        return embedding, logits, self.head.embed(features)

    @staticmethod
    def _build_loss(spec: Mapping[str, Any], num_classes: int, embedding_size: int) -> nn.Module:
        return build_loss_term(spec, num_classes, embedding_size)

    def _set_up_distillation(self, spec: Mapping[str, Any] | None, student_size: int) -> None:
        self.distillation_loss = None if spec is None else build_distillation(spec, student_size)
        self.distillation_weight = 0.0 if spec is None else float(spec["weight"])
        self._teacher: tuple[Teacher, ...] = ()  # a tuple: not a submodule, not in checkpoints

    def attach_teacher(self, teacher: Teacher) -> None:
        """Distil from ``teacher`` (frozen, in eval mode) in every training step.

        Raises:
            PlpModelsError: The model was built without ``distillation``.
        """
        if self.distillation_loss is None:
            raise PlpModelsError("attach_teacher: the model was built without distillation")
        if isinstance(teacher, nn.Module):
            teacher.eval().requires_grad_(False)
        self._teacher = (teacher,)

    def _distilled(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Return the weighted distillation loss of the student's ``features`` of ``images``."""
        (teacher,) = self._teacher
        if isinstance(teacher, nn.Module) and next(teacher.parameters()).device != images.device:
            teacher.to(images.device)
        with torch.no_grad():
            target = teacher.embed(images)
        assert self.distillation_loss is not None
        return self.distillation_weight * self.distillation_loss(features, target)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the logits when the model has a classifier, else the embedding."""
        embedding, logits = self.embedding_and_logits(images)
        return logits if logits is not None else embedding

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Return the features used for evaluation (the BNNeck feature when configured)."""
        return self.head.embed(self.backbone(images))

    def _step(self, batch: Sequence[torch.Tensor], stage: str) -> torch.Tensor:
        labels = batch[1]
        if stage == "train" and self._teacher:  # the teacher sees the same augmented images
            embedding, logits, features = self.outputs_and_features(batch[0])
            total = self._distilled(batch[0], features)
        else:
            embedding, logits = self._outputs(batch, stage)
            total = embedding.new_zeros(())
        for weight, loss in zip(self.loss_weights, self.losses, strict=True):
            inputs = logits if getattr(loss, "takes", "embeddings") == "logits" else embedding
            total = total + weight * loss(inputs, labels)
        batch_size = len(labels)
        if stage == "train":
            # Summed here and logged once per epoch: Lightning's per-step ``self.log`` was the
            # largest overhead against a plain loop on small models (bench/models.py).
            self._train_loss_sum += total.detach() * batch_size
            self._train_count += batch_size
            if logits is not None:
                self.train_accuracy.update(logits.detach(), labels)
            return total
        # Validation numbers are averaged over DDP ranks so every rank picks the same best epoch.
        self.log(f"{stage}_loss", total, batch_size=batch_size, sync_dist=True)
        if logits is not None:
            self.val_accuracy(logits.detach(), labels)
            self.log(f"{stage}_acc", self.val_accuracy, batch_size=batch_size)
        return total

    def _outputs(
        self, batch: Sequence[torch.Tensor], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(embedding, logits)``; in validation, keep the features retrieval ranks."""
        validation = self.retrieval_validation
        if stage != "val" or validation is None or self.trainer.sanity_checking:
            return self.embedding_and_logits(batch[0])
        embedding, logits, features = self.outputs_and_features(batch[0])
        validation.add(features, batch)
        return embedding, logits

    def on_validation_epoch_start(self) -> None:
        """Forget the retrieval features of the previous validation."""
        if self.retrieval_validation is not None:
            self.retrieval_validation.reset()

    def on_validation_epoch_end(self) -> None:
        """Rank the validation features and log ``val/<metric>`` (not in the sanity check)."""
        if self.retrieval_validation is None or self.trainer.sanity_checking:
            return
        for name, value in self.retrieval_validation.compute().items():
            # Every rank holds rank 0's value: "max" keeps it exactly (a mean may round).
            self.log(name, value, sync_dist=True, reduce_fx="max")

    def on_train_epoch_start(self) -> None:
        """Reset the running sums of the training loss."""
        self._train_loss_sum = torch.zeros((), device=self.device)
        self._train_count = 0

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean training loss (and accuracy, with a classifier)."""
        if self._train_count:
            self.log("train_loss", self._train_loss_sum / self._train_count)
        if self.has_classifier and self._train_count:
            self.log("train_acc", self.train_accuracy.compute())
            self.train_accuracy.reset()

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return the weighted loss of a training batch (summed for the epoch's log)."""
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return the weighted loss of a validation batch and log it."""
        return self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        """Return the optimizer and its per-step learning-rate schedule from the hparams."""
        spec = self.hparams["optimizer"]
        optimizer = build_optimizer(spec["name"], self.parameters(), **spec.get("args", {}))
        sched_spec = self.hparams["scheduler"]
        sched_args = dict(sched_spec.get("args", {}))
        total_steps = int(self.trainer.estimated_stepping_batches)
        max_epochs = max(self.trainer.max_epochs or 1, 1)
        scheduler = build_scheduler(
            sched_spec["name"],
            optimizer,
            total_steps=total_steps,
            steps_per_epoch=max(total_steps // max_epochs, 1),
            **sched_args,
        )
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class NetworkModel(PlpModel):
    """Any ``nn.Module`` embedding network trained like :class:`PlpModel`.

    ``network(images)`` gives the embeddings; when a loss takes logits, ``network.classifier``
    (an ``nn.Module`` from embeddings to logits) gives them. The losses, optimizer and schedule
    are the same ``{name, args}`` specs as :class:`PlpModel`'s. The network itself is not a
    hyper-parameter: a checkpoint is loaded back into a ``NetworkModel`` around the same network.

    Args:
        network: The embedding network.
        num_classes: Number of classes in the training data.
        losses: Sequence of ``{"name": ..., "weight": 1.0, "args": {...}}``.
        optimizer: ``{"name": ..., "args": {...}}``.
        scheduler: ``{"name": ..., "args": {...}}``.

    Raises:
        PlpModelsError: A loss takes logits but the network has no ``classifier``.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        losses: Sequence[Mapping[str, Any]] = DEFAULT_LOSSES,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        pl.LightningModule.__init__(self)
        losses = [dict(spec) for spec in losses]
        if not losses:
            raise PlpModelsError("losses: at least one loss is needed")
        self.save_hyperparameters(
            {
                "network": f"{type(network).__module__}.{type(network).__qualname__}",
                "num_classes": num_classes,
                "losses": losses,
                "optimizer": dict(optimizer or {"name": "adam", "args": {"lr": 1e-3}}),
                "scheduler": dict(scheduler or {"name": "none"}),
            }
        )
        self.network = network
        classifier = getattr(network, "classifier", None)
        embedding_size = getattr(classifier, "in_features", 0) or 0
        needs_logits = self._set_up_training(losses, num_classes, embedding_size)
        self._set_up_distillation(None, embedding_size)
        if needs_logits and not isinstance(classifier, nn.Module):
            raise PlpModelsError(
                f"a loss takes logits, but {type(network).__name__} has no 'classifier' module "
                "(embeddings -> logits): add one or use embedding losses only"
            )

    def embedding_and_logits(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(network(images), network.classifier(...) or None)``."""
        embedding = self.network(images)
        if not self.has_classifier:
            return embedding, None
        classifier: nn.Module = self.network.classifier  # type: ignore[assignment]
        return embedding, classifier(embedding)

    def outputs_and_features(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Return ``(embedding, logits or None, embedding)``: the network's output is both."""
        embedding, logits = self.embedding_and_logits(images)
        return embedding, logits, embedding

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Return ``network(images)``: the features used for evaluation."""
        return self.network(images)
