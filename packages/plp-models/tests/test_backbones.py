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
