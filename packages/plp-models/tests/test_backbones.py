from pathlib import Path

import pytest
import torch
import torchvision

import plp_models
from plp_models import PlpModelsError, _backbones, build_backbone, build_head

# (backbone, input size): the registry's every entry, at a size it is meant for.
SIZES = {
    "small_convnet": (8, 8),
    "resnet18_cifar": (32, 32),
    "resnet18": (64, 64),
    "resnet50": (64, 64),
    "mobilenet_v3_small": (64, 64),
    "mobilenet_v3_large": (64, 64),
}


def test_every_backbone_has_a_size_here() -> None:
    assert set(SIZES) == set(plp_models.available_backbones())


# (head, args, num_classes, embedding width given in_features, has logits): every head entry.
HEADS = {
    "plain": ("embedding_classifier", {}, 7),
    "bnneck": ("embedding_classifier", {"bnneck": True, "normalize": True}, 7),
    "embedding": ("embedding", {"bnneck": True}, 0),
    "classifier": ("classifier", {"normalize": True}, 7),
}


def test_every_head_is_parametrised_here() -> None:
    assert {spec[0] for spec in HEADS.values()} == set(plp_models.available_heads())


@pytest.mark.parametrize("name", sorted(SIZES))
@pytest.mark.parametrize("head_id", sorted(HEADS))
def test_backbone_and_head_forward_backward(name: str, head_id: str) -> None:
    torch.manual_seed(0)
    head_name, head_args, num_classes = HEADS[head_id]
    backbone = build_backbone(name, in_channels=3, image_size=SIZES[name])
    head = build_head(
        head_name,
        in_features=backbone.out_features,
        embedding_size=32,
        num_classes=num_classes,
        **head_args,
    )
    images = torch.randn(2, 3, *SIZES[name])
    features = backbone(images)
    assert features.shape == (2, backbone.out_features)
    embedding, logits = head(features)
    width = backbone.out_features if head_name == "classifier" else 32
    assert embedding.shape == (2, width)
    assert head.eval().embed(features).shape == (2, width)
    head.train()
    loss = embedding.sum()
    if num_classes:
        assert logits is not None and logits.shape == (2, num_classes)
        loss = loss + logits.sum()
    else:
        assert logits is None
    loss.backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_heads_refuse_a_missing_or_unwanted_classifier() -> None:
    with pytest.raises(PlpModelsError, match="no classifier"):
        build_head("embedding", in_features=8, embedding_size=4, num_classes=3)
    with pytest.raises(PlpModelsError, match="needs a loss that takes logits"):
        build_head("classifier", in_features=8, embedding_size=4, num_classes=0)


def test_single_channel_inputs_replace_the_stem() -> None:
    for name in ("resnet18", "mobilenet_v3_small", "resnet18_cifar"):
        backbone = build_backbone(name, in_channels=1)
        assert backbone(torch.randn(2, 1, 32, 32)).shape == (2, backbone.out_features)


def test_weights_path_loads_a_local_torchvision_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    backbone = build_backbone("resnet18", weights_path=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(backbone.network.conv1.weight, reference.conv1.weight)
    images = torch.randn(2, 3, 64, 64)
    reference.fc = torch.nn.Identity()
    torch.testing.assert_close(backbone.eval()(images), reference.eval()(images))


def test_weights_path_errors(tmp_path: Path) -> None:
    with pytest.raises(PlpModelsError, match="does not exist"):
        build_backbone("resnet18", weights_path=str(tmp_path / "missing.pth"))
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(PlpModelsError, match="does not fit"):
        build_backbone("resnet18", weights_path=str(tmp_path / "r50.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PlpModelsError, match="cannot read"):
        build_backbone("resnet18", weights_path=str(tmp_path / "junk.pth"))


# ---------------------------------------------------------------- pretrained torchvision weights

TORCHVISION = ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large")


def test_torchvision_entries_are_the_registered_torchvision_backbones() -> None:
    from plp_models._backbones import TORCHVISION_ARCHITECTURES

    assert set(TORCHVISION) == set(TORCHVISION_ARCHITECTURES)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache under a temporary TORCH_HOME, and downloads that always fail."""
    from urllib.error import URLError

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise URLError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_missing_weights_offline_name_the_file_and_the_folder(
    offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.error import URLError

    asked: list[tuple[object, ...]] = []

    def refuse(*args: object, **kwargs: object) -> None:
        asked.append(args)
        raise URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(PlpModelsError) as caught:
        build_backbone("resnet50", weights="IMAGENET1K_V2")
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url
    assert asked == [(url, str(offline / "resnet50-11ad3fa6.pth"), "11ad3fa6")]  # sha256 prefix
    message = str(caught.value)
    assert "\n" not in message
    assert "put resnet50-11ad3fa6.pth (from " in message
    assert f"in {offline}/" in message
    assert "URLError" in message


def test_unknown_weights_name_lists_the_valid_ones(offline: Path) -> None:
    with pytest.raises(
        PlpModelsError,
        match=r"unknown weights 'IMAGENET1K_V3'; valid: IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT$",
    ):
        build_backbone("resnet50", weights="IMAGENET1K_V3")


def test_weights_and_weights_path_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(PlpModelsError, match="not both"):
        build_backbone("resnet18", weights="DEFAULT", weights_path=str(tmp_path / "w.pth"))


def test_unreadable_or_unfitting_hub_files_say_so(offline: Path) -> None:
    offline.mkdir(parents=True)
    (offline / "resnet18-f37072fd.pth").write_bytes(b"truncated download")
    with pytest.raises(PlpModelsError, match=r"cannot read.*delete it"):
        build_backbone("resnet18", weights="IMAGENET1K_V1")
    torch.save([1, 2], offline / "resnet18-f37072fd.pth")
    with pytest.raises(PlpModelsError, match="holds a list, not a state dict"):
        build_backbone("resnet18", weights="IMAGENET1K_V1")
    torch.save(
        torchvision.models.mobilenet_v3_small().state_dict(), offline / "resnet18-f37072fd.pth"
    )
    with pytest.raises(PlpModelsError, match=r"resnet18-f37072fd\.pth does not fit"):
        build_backbone("resnet18", weights="IMAGENET1K_V1")


# Every torchvision entry once; each channel rule (3: as saved, 1: summed, 4: repeated) once+.
PRETRAINED_CASES = [
    ("resnet50", "IMAGENET1K_V2", 3),
    ("resnet18", "IMAGENET1K_V1", 1),
    ("mobilenet_v3_small", "DEFAULT", 4),
    ("mobilenet_v3_large", "IMAGENET1K_V2", 1),
]


def test_pretrained_cases_cover_every_torchvision_entry() -> None:
    assert {case[0] for case in PRETRAINED_CASES} == set(TORCHVISION)


@pytest.mark.parametrize(("name", "weights", "in_channels"), PRETRAINED_CASES)
def test_pretrained_weights_load_from_the_hub_cache(
    name: str, weights: str, in_channels: int, offline: Path
) -> None:
    torch.manual_seed(2)
    reference = torchvision.models.get_model(name, weights=None)
    offline.mkdir(parents=True)
    url = torchvision.models.get_model_weights(name)[weights].url
    torch.save(
        reference.state_dict(), offline / url.rsplit("/", 1)[1]
    )  # e.g. resnet50-11ad3fa6.pth
    backbone = build_backbone(name, in_channels=in_channels, weights=weights)

    first_name, first = next(
        (k, m) for k, m in reference.named_modules() if isinstance(m, torch.nn.Conv2d)
    )
    expected = {
        key: value
        for key, value in reference.state_dict().items()
        if not key.startswith(("fc.", "classifier.", f"{first_name}."))
    }
    got = backbone.network.state_dict()
    assert set(got) == {*expected, f"{first_name}.weight"}
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)

    conv = backbone.network.get_submodule(first_name)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (
        in_channels,
        first.out_channels,
        first.kernel_size,
        first.stride,
    )
    rgb = first.weight.detach()
    if in_channels == 3:
        expected_kernel = rgb
    elif in_channels == 1:  # timm's rule: the RGB kernels summed
        expected_kernel = rgb.sum(dim=1, keepdim=True)
    else:  # RGB repeated, rescaled by 3 / in_channels
        expected_kernel = rgb.repeat(1, 2, 1, 1)[:, :in_channels] * (3 / in_channels)
    torch.testing.assert_close(conv.weight.detach(), expected_kernel)
    assert backbone(torch.randn(2, in_channels, 32, 32)).shape == (2, backbone.out_features)


# ---------------------------------------------------------------- timm


def test_timm_backbone_builds_by_prefix() -> None:
    import timm

    torch.manual_seed(0)
    backbone = build_backbone("timm:test_resnet", in_channels=3, image_size=(32, 32))
    reference = timm.create_model("test_resnet", num_classes=0)
    assert backbone.out_features == reference.num_features
    images = torch.randn(2, 3, 32, 32)
    assert backbone(images).shape == (2, reference.num_features)
    one_channel = build_backbone("timm:test_resnet", in_channels=1)
    assert one_channel(torch.randn(2, 1, 32, 32)).shape == (2, one_channel.out_features)


def test_timm_weights_path_loads_a_local_file(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(3)
    reference = timm.create_model("test_resnet", num_classes=0)
    torch.save(reference.state_dict(), tmp_path / "test_resnet.pth")
    backbone = build_backbone("timm:test_resnet", weights_path=str(tmp_path / "test_resnet.pth"))
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(backbone.network.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(PlpModelsError, match="does not exist"):
        build_backbone("timm:test_resnet", weights_path=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(PlpModelsError, match=r"junk.pth: cannot load into timm:test_resnet"):
        build_backbone("timm:test_resnet", weights_path=str(tmp_path / "junk.pth"))


def test_timm_pretrained_offline_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._builder as builder

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", refuse)
    monkeypatch.setattr(builder, "load_state_dict_from_url", refuse)
    # The host answers (as far as the quick check knows), the download itself fails.
    monkeypatch.setattr(_backbones, "_timm_weights_unreachable", lambda name: None)
    with pytest.raises(PlpModelsError) as caught:
        build_backbone("timm:resnet18", pretrained=True)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("timm:resnet18 pretrained weights could not be fetched (OSError")
    assert "models--timm--resnet18.a1_in1k/" in message
    assert "weights_path" in message


def test_timm_pretrained_with_the_hub_unreachable_fails_before_the_retries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # no cached copy
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # RFC 6761: never resolves
    with pytest.raises(PlpModelsError) as caught:
        build_backbone("timm:resnet18", pretrained=True)
    message = str(caught.value)
    assert message.startswith("timm:resnet18 pretrained weights could not be fetched")
    assert "hub.invalid unreachable" in message and "\n" not in message


def test_reachability_check_tells_an_open_port_from_a_closed_one() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert _backbones._unreachable(f"http://127.0.0.1:{port}/weights.pth") is None
    closed = _backbones._unreachable(f"http://127.0.0.1:{port}/weights.pth")
    assert closed is not None and closed.startswith("127.0.0.1 unreachable")


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(
        PlpModelsError, match=r"unknown timm model 'resnet5' \(did you mean 'resnet50'\?\)"
    ):
        build_backbone("timm:resnet5")
    with pytest.raises(PlpModelsError) as caught:
        build_backbone("resnet5")
    message = str(caught.value)
    assert "did you mean 'resnet50'" in message
    assert all(name in message for name in plp_models.available_backbones())
    assert "timm:<model>" in message
    with pytest.raises(PlpModelsError, match=r"'timm:test_resnet' takes no argument 'weights'"):
        build_backbone("timm:test_resnet", weights="DEFAULT")


@pytest.mark.parametrize("name", TORCHVISION)
def test_weights_names_are_checked_when_a_config_is_validated(name: str) -> None:
    pydantic = pytest.importorskip("pydantic")
    parameters, takes_kwargs = plp_models.BACKBONES.parameters(name)
    assert set(parameters) == {"weights", "weights_path"} and not takes_kwargs
    adapter = pydantic.TypeAdapter(parameters["weights"].annotation)
    valid = list(torchvision.models.get_model_weights(name).__members__)
    assert [adapter.validate_python(weights) for weights in valid] == valid
    assert adapter.validate_python(None) is None
    with pytest.raises(
        pydantic.ValidationError, match=rf"{name}: unknown weights 'V2'; valid: {', '.join(valid)}"
    ):
        adapter.validate_python("V2")
