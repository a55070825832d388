from pathlib import Path

import pytest
import torch
import torchvision

import plp_models
from plp_models import PlpModelsError, build_backbone, build_head

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


@pytest.mark.parametrize("name", sorted(SIZES))
@pytest.mark.parametrize(
    "head_args", [{}, {"bnneck": True, "normalize": True}], ids=["plain", "bnneck"]
)
def test_backbone_and_head_forward_backward(name: str, head_args: dict) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name, in_channels=3, image_size=SIZES[name])
    head = build_head(
        "embedding_classifier",
        in_features=backbone.out_features,
        embedding_size=32,
        num_classes=7,
        **head_args,
    )
    images = torch.randn(2, 3, *SIZES[name])
    features = backbone(images)
    assert features.shape == (2, backbone.out_features)
    embedding, logits = head(features)
    assert embedding.shape == (2, 32) and logits.shape == (2, 7)
    (embedding.sum() + logits.sum()).backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


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
