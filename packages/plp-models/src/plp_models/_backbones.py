"""Backbones: image -> feature vector, built by name."""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import torch
from torch import nn

from plp_core import did_you_mean
from plp_models._errors import PlpModelsError
from plp_models._registry import BACKBONES
from plp_models._weights import load_weights

__all__ = [
    "BACKBONES",
    "Backbone",
    "CifarResNet18",
    "SmallConvNet",
    "TIMM_PREFIX",
    "TimmBackbone",
    "TorchvisionBackbone",
    "TorchvisionWeights",
    "available_backbones",
    "build_backbone",
    "hub_weights_file",
]


class Backbone(nn.Module):
    """A network mapping images ``(N, C, H, W)`` to features ``(N, out_features)``."""

    out_features: int


@BACKBONES.register("small_convnet")
class SmallConvNet(Backbone):
    """Three 3x3 conv-BN-ReLU blocks, one 2x2 max-pool, global average pooling.

    Sized for 8x8 (digits) and 28x28 (MNIST) inputs; works for any size >= 2x2.

    Args:
        in_channels: Channels of the input images.
        image_size: Height and width of the input images (unused; any size works).
        width: Channels of the first block; the next two have 2x and 4x as many.
    """

    def __init__(
        self, in_channels: int = 1, image_size: tuple[int, int] = (8, 8), width: int = 32
    ) -> None:
        super().__init__()
        del image_size

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 4 * width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled features of ``images``."""
        return self.features(images)


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(F(x) + shortcut(x))``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@BACKBONES.register("resnet18_cifar")
class CifarResNet18(Backbone):
    """ResNet-18 for 32x32 images: a 3x3 stride-1 stem and no max-pool (He et al. 2016, CIFAR).

    Args:
        in_channels: Channels of the input images.
        image_size: Height and width of the input images (unused; any size works).
        width: Channels of the first stage (64 in the paper); stages have 1x, 2x, 4x, 8x.
    """

    def __init__(
        self, in_channels: int = 3, image_size: tuple[int, int] = (32, 32), width: int = 64
    ) -> None:
        super().__init__()
        del image_size
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        channels = width
        for index, multiplier in enumerate((1, 2, 4, 8)):
            out = width * multiplier
            stride = 1 if index == 0 else 2
            stages += [_BasicBlock(channels, out, stride), _BasicBlock(out, out, 1)]
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled features of ``images``."""
        return self.pool(self.stages(self.stem(images)))


class TorchvisionBackbone(Backbone):
    """A torchvision classification network with its classifier removed.

    Starts from random weights, from torchvision's pretrained ``weights`` (an enum name such as
    ``"IMAGENET1K_V2"``, see ``torchvision.models.get_model_weights(architecture)``) read from
    torch's hub cache and fetched into it when missing, or from a local state dict
    ``weights_path`` saved from the same architecture (its classifier keys are ignored). For other
    than 3 input channels the first convolution is rebuilt; pretrained kernels are adapted as
    timm does (summed over RGB for one channel, repeated and rescaled for more).

    Args:
        architecture: ``resnet18``, ``resnet50`` or ``mobilenet_v3_small`` / ``_large``.
        in_channels: Channels of the input images.
        image_size: Height and width of the input images (unused).
        weights: Name of torchvision pretrained weights for ``architecture``, or None.
        weights_path: Optional path of a local torchvision state dict (not with ``weights``).
    """

    def __init__(
        self,
        architecture: str,
        in_channels: int = 3,
        image_size: tuple[int, int] = (224, 224),
        weights: str | None = None,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        del image_size
        import torchvision

        if weights is not None and weights_path is not None:
            raise PlpModelsError(
                f"{architecture}: give weights ({weights!r}) or weights_path ({weights_path!r}), "
                "not both"
            )
        if weights is None:
            network = torchvision.models.get_model(architecture, weights=None)
        else:
            chosen = _torchvision_weights(architecture, weights)
            categories = chosen.meta.get("categories")
            num_classes = len(categories) if categories else 1000
            network = torchvision.models.get_model(
                architecture, weights=None, num_classes=num_classes
            )
            state = _hub_state_dict(architecture, weights, chosen.url)
            _load_state(network, state, hub_weights_file(chosen.url))
        if weights_path is not None:
            _load_local_weights(network, weights_path)
        if architecture.startswith("resnet"):
            self.out_features = network.fc.in_features
            network.fc = nn.Identity()
        else:
            self.out_features = network.classifier[0].in_features
            network.classifier = nn.Identity()
        if in_channels != 3:
            _adapt_first_conv(network, in_channels)
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled features of ``images``."""
        return self.network(images)


@dataclass(frozen=True)
class TorchvisionWeights:
    """Marks an argument as the name of torchvision weights of ``architecture``.

    Used as ``Annotated[str | None, TorchvisionWeights("resnet50")]``: pydantic (through
    ``__get_pydantic_core_schema__``) then checks the name when a config loads, with the one-line
    message listing the valid names; torchvision is imported only then.
    """

    architecture: str

    def check(self, value: Any) -> Any:
        """Return ``value`` if it is None or a weights name of the architecture, else raise."""
        if value is not None:
            _torchvision_weights(self.architecture, value)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        """Return the schema of ``source`` followed by :meth:`check` (pydantic's protocol)."""
        return {
            "type": "function-after",
            "function": {"type": "no-info", "function": self.check},
            "schema": handler(source),
        }


def _torchvision_weights(architecture: str, name: str) -> Any:
    """Return the weights enum member ``name`` of ``architecture``; unknown names raise."""
    import torchvision

    enum = torchvision.models.get_model_weights(architecture)
    if name not in enum.__members__:
        raise PlpModelsError(
            f"{architecture}: unknown weights {name!r}; valid: {', '.join(enum.__members__)}"
        )
    return enum[name]


def hub_weights_file(url: str) -> Path:
    """Return where torch's hub cache keeps the file downloaded from ``url``.

    That is ``<torch.hub.get_dir()>/checkpoints/<file name of the url>``, the path
    ``torch.hub.load_state_dict_from_url`` reads before downloading (``TORCH_HOME`` moves it).
    """
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _hub_state_dict(architecture: str, weights: str, url: str) -> dict[str, torch.Tensor]:
    """Return the state dict at ``url`` from torch's hub cache, downloading it when missing."""
    target = hub_weights_file(url)
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # The file name carries a prefix of its sha256 (resnet50-11ad3fa6.pth): torch checks it.
            match = re.search(torch.hub.HASH_REGEX, target.name)
            prefix = match.group(1) if match else None
            torch.hub.download_url_to_file(url, str(target), prefix, progress=False)
        except Exception as error:  # URLError, HTTPError, timeouts, a read-only cache ...
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise PlpModelsError(
                f"{architecture} weights {weights} could not be downloaded "
                f"({type(error).__name__}: {reason[:120]}); offline, put {target.name} "
                f"(from {url}) in {target.parent}/"
            ) from None
    try:
        state = load_weights(target)
    except PlpModelsError as error:
        raise PlpModelsError(f"{error}; delete it to download it again") from None
    if not isinstance(state, dict):
        raise PlpModelsError(f"{target}: holds a {type(state).__name__}, not a state dict")
    return state


def _load_state(network: nn.Module, state: dict[str, torch.Tensor], source: object) -> None:
    """Load ``state`` into ``network`` strictly; a mismatch raises one line naming ``source``."""
    try:
        network.load_state_dict(state)
    except RuntimeError as error:  # missing / unexpected keys, shape mismatches
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else "mismatch"
        raise PlpModelsError(f"{source} does not fit: {detail[:200]}") from None


def _adapt_first_conv(network: nn.Module, in_channels: int) -> None:
    """Replace the first 3-channel convolution by one taking ``in_channels``, weights adapted."""
    from timm.models import adapt_input_conv

    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            conv = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,  # type: ignore[arg-type]
                module.stride,  # type: ignore[arg-type]
                module.padding,  # type: ignore[arg-type]
                module.dilation,  # type: ignore[arg-type]
                module.groups,
                bias=module.bias is not None,
            )
            with torch.no_grad():
                conv.weight.copy_(adapt_input_conv(in_channels, module.weight))
                if module.bias is not None:
                    conv.bias.copy_(module.bias)  # type: ignore[union-attr]
            parent_name, _, child = name.rpartition(".")
            setattr(network.get_submodule(parent_name), child, conv)
            return
    raise PlpModelsError(f"{type(network).__name__} has no 3-channel first convolution to adapt")


def _load_local_weights(network: nn.Module, weights_path: str) -> None:
    path = Path(weights_path)
    if not path.is_file():
        raise PlpModelsError(f"weights_path {path} does not exist")
    try:
        state = load_weights(path)
    except PlpModelsError as error:
        raise PlpModelsError(f"weights_path {error}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    classifier = ("fc.", "classifier.")
    kept = {k: v for k, v in state.items() if not k.startswith(classifier)}
    try:
        missing, unexpected = network.load_state_dict(kept, strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise PlpModelsError(f"weights_path {path} does not fit: {detail}") from None
    missing = [k for k in missing if not k.startswith(classifier)]
    if missing or unexpected:
        raise PlpModelsError(
            f"weights_path {path} does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def _torchvision(architecture: str) -> Callable[..., TorchvisionBackbone]:
    def factory(
        in_channels: int = 3,
        image_size: tuple[int, int] = (224, 224),
        weights: str | None = None,
        weights_path: str | None = None,
    ) -> TorchvisionBackbone:
        return TorchvisionBackbone(architecture, in_channels, image_size, weights, weights_path)

    factory.__doc__ = (
        f"torchvision's {architecture} without its classifier; ``weights`` names torchvision's "
        "pretrained weights (e.g. IMAGENET1K_V1), ``weights_path`` a local state dict."
    )
    factory.__name__ = factory.__qualname__ = architecture
    # An object, not a string: the architecture is not a name get_type_hints could resolve.
    factory.__annotations__ = {
        **factory.__annotations__,
        "weights": Annotated[str | None, TorchvisionWeights(architecture)],
    }
    return factory


TORCHVISION_ARCHITECTURES = ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large")
for _architecture in TORCHVISION_ARCHITECTURES:
    BACKBONES.register(_architecture)(_torchvision(_architecture))


TIMM_PREFIX = "timm:"


class TimmBackbone(Backbone):
    """A timm model (``timm.create_model(model_name, num_classes=0)``): pooled features.

    Built from the config as ``name = "timm:<model_name>"``. ``out_features`` is the model's
    ``num_features``. With ``pretrained`` timm fetches the weights (Hugging Face hub or its URL)
    into its cache on first use; ``weights_path`` loads them from a local file instead (the
    file timm would fetch: ``.safetensors`` or ``.pth``). timm adapts the first convolution to
    ``in_channels`` itself.

    Args:
        model_name: A name from ``timm.list_models()``.
        in_channels: Channels of the input images.
        image_size: Height and width of the input images (unused; timm models pool globally).
        pretrained: Start from timm's pretrained weights for ``model_name``.
        weights_path: Local file of those weights (implies ``pretrained``).
    """

    def __init__(
        self,
        model_name: str,
        in_channels: int = 3,
        image_size: tuple[int, int] = (224, 224),
        pretrained: bool = False,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        del image_size
        import timm

        if not timm.is_model(model_name):
            raise PlpModelsError(
                f"unknown timm model {model_name!r}"
                f"{did_you_mean(model_name, timm.list_models())}; timm.list_models() lists them"
            )
        if weights_path is not None and not Path(weights_path).is_file():
            raise PlpModelsError(f"weights_path {weights_path} does not exist")
        overlay = {"file": str(weights_path)} if weights_path is not None else None
        if (
            pretrained
            and weights_path is None
            and (offline := _timm_weights_unreachable(model_name))
        ):
            raise PlpModelsError(_timm_fetch_message(model_name, None, ConnectionError(offline)))
        try:
            self.network = timm.create_model(
                model_name,
                pretrained=pretrained or weights_path is not None,
                pretrained_cfg_overlay=overlay,
                num_classes=0,
                in_chans=in_channels,
            )
        except Exception as error:  # timm/hub raise many types; only the weights can fail here
            if not (pretrained or weights_path is not None):
                raise
            raise PlpModelsError(_timm_fetch_message(model_name, weights_path, error)) from None
        self.out_features = int(self.network.num_features)  # type: ignore[arg-type]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled features of ``images``."""
        return self.network(images)


BACKBONES.register_prefix(TIMM_PREFIX, TimmBackbone, hint="any timm model as 'timm:<model>'")


_HF_WEIGHTS_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
_REACH_TIMEOUT_S = 3.0  # the whole check, name lookup included


def _timm_weights_unreachable(model_name: str) -> str | None:
    """Return why timm cannot fetch ``model_name``'s weights now, or None if it may.

    None when a copy is in the Hugging Face or torch hub cache, when a proxy is configured or
    the hub is set offline (timm then answers quickly itself), or when the weights' host
    answers within a few seconds. Otherwise timm's hub client would retry for a minute
    before saying the same.
    """
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(model_name)
    proxies = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    if config is None or constants.HF_HUB_OFFLINE or any(os.environ.get(p) for p in proxies):
        return None
    if config.hf_hub_id:
        repo = config.hf_hub_id.split("@")[0]
        if any(isinstance(try_to_load_from_cache(repo, f), str) for f in _HF_WEIGHTS_FILES):
            return None
        url = constants.ENDPOINT
    elif config.url:  # a URL, or (URL, file name) as timm's hub code takes it
        url, name = (config.url, "") if isinstance(config.url, str) else config.url
        name = name or Path(urlparse(url).path).name
        if (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file():
            return None
    else:
        return None
    return _unreachable(url)


def _unreachable(url: str) -> str | None:
    """Return why ``url``'s host cannot be connected to in a few seconds, or None if it can."""
    parts = urlparse(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    answer: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=_REACH_TIMEOUT_S).close()
            answer.append(None)
        except OSError as error:
            answer.append(f"{host} unreachable: {error}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(_REACH_TIMEOUT_S)
    return answer[0] if answer else f"{host} did not answer in {_REACH_TIMEOUT_S:.0f} s"


def _timm_fetch_message(model_name: str, weights_path: str | None, error: Exception) -> str:
    reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
    what = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    if weights_path is not None:
        return f"weights_path {weights_path}: cannot load into timm:{model_name} ({what})"
    import timm
    from huggingface_hub.constants import HF_HUB_CACHE

    config = timm.models.get_pretrained_cfg(model_name)
    repo = config.hf_hub_id if config is not None else None
    if repo:
        folder = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        where = f"copy {folder}/ from a machine that has it (huggingface-cli download {repo})"
    else:
        where = "download the weights elsewhere"
    return (
        f"timm:{model_name} pretrained weights could not be fetched ({what}); offline, {where}, "
        "or set weights_path to a local copy of the weights file"
    )


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Return the backbone registered as ``name`` (or ``timm:<model>``), built with ``kwargs``."""
    return BACKBONES.build(name, **kwargs)


def available_backbones() -> list[str]:
    """Return the names of the registered backbones (timm models come on top as ``timm:<m>``)."""
    return BACKBONES.available()
