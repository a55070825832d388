"""plp-models: backbones, heads and the LightningModule that trains them."""

from plp_models._backbones import (
    TIMM_PREFIX,
    Backbone,
    SmallConvNet,
    available_backbones,
    build_backbone,
)
from plp_models._defaults import DEFAULT_SETTINGS, default_settings
from plp_models._errors import PlpModelsError
from plp_models._heads import (
    ClassifierHead,
    EmbeddingClassifierHead,
    EmbeddingHead,
    Head,
    available_heads,
    build_head,
)
from plp_models._module import NetworkModel, PlpModel
from plp_models._optim import build_optimizer, build_scheduler
from plp_models._registry import BACKBONES, HEADS, OPTIMIZERS, SCHEDULERS
from plp_models._training import ExponentialMovingAverage, FreezeBackbone
from plp_models._validation import VALIDATION_METRICS, RetrievalValidation
from plp_models._weights import UnreadableWeightsError, UnsafeWeightsError, load_weights

__all__ = [
    # the LightningModule
    "PlpModel",
    "NetworkModel",
    # retrieval validation and training callbacks
    "VALIDATION_METRICS",
    "RetrievalValidation",
    "ExponentialMovingAverage",
    "FreezeBackbone",
    # registries (plp_core.Registry): names, typed arguments, build
    "BACKBONES",
    "HEADS",
    "OPTIMIZERS",
    "SCHEDULERS",
    # backbones
    "TIMM_PREFIX",
    "Backbone",
    "SmallConvNet",
    "available_backbones",
    "build_backbone",
    # heads
    "ClassifierHead",
    "EmbeddingClassifierHead",
    "EmbeddingHead",
    "Head",
    "available_heads",
    "build_head",
    # optimisation
    "build_optimizer",
    "build_scheduler",
    # default settings per dataset
    "DEFAULT_SETTINGS",
    "default_settings",
    # weight files, loaded safely
    "load_weights",
    # errors
    "PlpModelsError",
    "UnreadableWeightsError",
    "UnsafeWeightsError",
]
