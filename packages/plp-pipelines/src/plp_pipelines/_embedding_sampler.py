"""The model's embeddings of the training set, for samplers that draw from them (``hard_pk``)."""

from __future__ import annotations

from typing import Any

import numpy as np

import plp_data
from plp_pipelines._features import extract_features
from plp_pipelines._protocols import as_embedding_model

__all__ = ["feed_embedding_sampler"]


def feed_embedding_sampler(datamodule: Any, model: Any) -> None:
    """Make ``model.embed`` of the training images the datamodule's ``embedding_source``.

    A plp datamodule hands it to a training sampler that draws from embeddings
    (:class:`plp_data.EmbeddingSampler`, e.g. ``hard_pk``), which calls it when a refresh epoch
    starts: the training images without augmentation (``train_embedding_loader``) are embedded
    by the model as it is then, in eval mode; under DDP every rank embeds a shard and all get
    every row (:func:`~plp_pipelines._features.extract_features`), so the ranks build the same
    class graph.
    """
    if not isinstance(datamodule, plp_data.PlpDataModule):
        return
    embedder = as_embedding_model(model)

    def training_embeddings() -> np.ndarray:
        loader = datamodule.train_embedding_loader()
        return extract_features(embedder, loader, with_logits=False).features

    datamodule.embedding_source = training_embeddings
