"""The device data path: exact evaluation tensors, augmentation distributions, keyed randomness."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from scipy import stats
from torch import nn
from torchvision import transforms as T

import plp_data._base
from plp_data import PlpDataError, build_datamodule
from plp_data._device import (
    DeviceAugmentation,
    DeviceImageDataset,
    KeyedBatch,
    KeyedBatchSampler,
    _Crop,
    _Flip,
    _Pad,
    device_augmentation,
    erasing_boxes,
)
from plp_data._transforms import ResolvedTransforms
from plp_data.testing import write_cifar_batches, write_idx_dataset, write_market1501

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _cifar(tmp_path: Path, **kwargs: object):
    write_cifar_batches(tmp_path, per_batch=8, num_test=12)
    return build_datamodule("cifar10", root=str(tmp_path), batch_size=8, **kwargs)


def _reference(image: Image.Image, mean, std, size=None) -> torch.Tensor:
    steps = [T.Resize(list(size))] if size else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])(image)


def test_cifar_evaluation_batches_equal_torchvision_to_tensor_and_normalize(tmp_path: Path):
    dm = _cifar(tmp_path, pipeline="device", val_fraction=0.0)
    assert dm.data_pipeline == "device"
    images, labels = next(iter(dm.split_dataloader("test")))
    entry = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    raw = entry["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    expected = torch.stack(
        [_reference(Image.fromarray(raw[i]), CIFAR10_MEAN, CIFAR10_STD) for i in range(8)]
    )
    torch.testing.assert_close(images, expected, atol=1e-6, rtol=0)
    assert labels.tolist() == entry["labels"][:8]


def test_mnist_evaluation_batches_equal_torchvision_with_a_resize(tmp_path: Path):
    write_idx_dataset(tmp_path, "MNIST", num_train=10, num_test=6)
    dm = build_datamodule(
        "mnist", root=str(tmp_path), batch_size=6, image_size=[20, 24], val_fraction=0.0
    )
    device_images, _ = next(iter(dm.split_dataloader("test")))
    assert dm.data_pipeline == "device"
    workers = build_datamodule(
        "mnist", root=str(tmp_path), batch_size=6, image_size=[20, 24], pipeline="workers"
    )
    worker_images, _ = next(iter(workers.split_dataloader("test")))
    assert device_images.shape == (6, 1, 20, 24)
    torch.testing.assert_close(device_images, worker_images, atol=1e-6, rtol=0)


def test_market1501_evaluation_batches_equal_torchvision(tmp_path: Path):
    write_market1501(tmp_path)
    dm = build_datamodule(
        "market1501", root=str(tmp_path), batch_size=8, cache_dir=str(tmp_path / "cache")
    )
    images, _, cameras = next(iter(dm.split_dataloader("gallery")))
    assert dm.data_pipeline == "device"
    paths = sorted((tmp_path / "bounding_box_test").glob("*.jpg"))[1:]  # junk skipped
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = torch.stack(
        [_reference(Image.open(p).convert("RGB"), mean, std, (256, 128)) for p in paths]
    )
    torch.testing.assert_close(images, expected, atol=1e-6, rtol=0)
    assert cameras.tolist() == [1, 1, 4, 3]


def _position_images(count: int, size: int = 32) -> torch.Tensor:
    """uint8 (N, 2, H, W): channel 0 holds row + 1, channel 1 holds column + 1."""
    rows = torch.arange(1, size + 1, dtype=torch.uint8)[:, None].expand(size, size)
    cols = torch.arange(1, size + 1, dtype=torch.uint8)[None, :].expand(size, size)
    return torch.stack([rows, cols]).expand(count, 2, size, size).contiguous()


def test_pad_crop_offsets_and_flips_follow_their_distributions():
    count = 4000
    augmentation = DeviceAugmentation([_Pad(4, 4, 4, 4), _Crop(32, 32), _Flip(0.3, False)], 0.0)
    out = augmentation.geometry(_position_images(count), np.random.default_rng(7)).long()
    # Output row 16 shows original row top - 4 + 16, stored as that + 1: always inside the image.
    top = out[:, 0, 16, 16] - 13
    flipped = out[:, 1, 16, 8] > out[:, 1, 16, 23]
    left = torch.where(flipped, out[:, 1, 16, 23], out[:, 1, 16, 8]) - 5
    for offsets in (top, left):
        counts = np.bincount(offsets.numpy(), minlength=9)
        assert len(counts) == 9  # offsets 0..8 only
        assert stats.chisquare(counts).pvalue > 1e-3
    assert abs(flipped.float().mean().item() - 0.3) < 3 * np.sqrt(0.3 * 0.7 / count)
    # Rows never flip, and a crop is a translation: neighbouring pixels stay neighbours.
    assert torch.equal(out[:, 0, 17, 16] - out[:, 0, 16, 16], torch.ones(count, dtype=torch.long))


def test_erasing_boxes_follow_torchvision_random_erasing():
    count, height, width = 3000, 64, 32
    top, left, box_h, box_w = erasing_boxes(count, height, width, 0.5, np.random.default_rng(3))
    erased = box_h > 0
    assert abs(erased.mean() - 0.5) < 3 * np.sqrt(0.25 / count)
    assert np.all(top + box_h <= height) and np.all(left + box_w <= width)
    torch.manual_seed(0)
    reference = [
        T.RandomErasing.get_params(
            torch.zeros(1, height, width), scale=(0.02, 0.33), ratio=(0.3, 3.3), value=[0]
        )[:4]
        for _ in range(count)
    ]
    ref_top, _, ref_h, ref_w = (np.array(v) for v in zip(*reference, strict=True))
    area = box_h[erased] * box_w[erased]
    assert stats.ks_2samp(area, ref_h * ref_w).pvalue > 1e-3
    assert stats.ks_2samp(box_h[erased] / box_w[erased], ref_h / ref_w).pvalue > 1e-3
    # The box's top is uniform over the places it fits, as torchvision's.
    relative = top[erased] / (height - box_h[erased] + 1)
    assert stats.ks_2samp(relative, ref_top / (height - ref_h + 1)).pvalue > 1e-3


def test_erase_zeroes_exactly_the_drawn_box():
    augmentation = DeviceAugmentation([], 1.0)
    images = torch.ones(50, 3, 20, 10)
    out = augmentation.erase(images, np.random.default_rng(5))
    top, left, box_h, box_w = erasing_boxes(50, 20, 10, 1.0, np.random.default_rng(5))
    for i in range(50):
        expected = torch.ones(3, 20, 10)
        expected[:, top[i] : top[i] + box_h[i], left[i] : left[i] + box_w[i]] = 0
        assert torch.equal(out[i], expected), i


def test_same_seed_epoch_and_batch_give_the_same_batch(tmp_path: Path):
    def epoch_batches(seed: int, epoch: int) -> list[torch.Tensor]:
        dm = _cifar(tmp_path, seed=seed, val_fraction=0.0, random_erasing=0.5)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [images for images, _ in loader]

    first, again = epoch_batches(0, 1), epoch_batches(0, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], epoch_batches(0, 2)[0])
    assert not torch.equal(first[0], epoch_batches(1, 1)[0])


def test_augmentation_depends_on_the_batch_key_only():
    images = torch.randint(0, 256, (20, 32, 32, 3), dtype=torch.uint8)
    augmentation = DeviceAugmentation([_Pad(4, 4, 4, 4), _Crop(32, 32), _Flip(0.5, False)], 0.5)
    dataset = DeviceImageDataset(images, torch.zeros(20), CIFAR10_MEAN, CIFAR10_STD)
    train = dataset.with_augmentation(augmentation, seed=3)
    batch = train.__getitems__(KeyedBatch([4, 5, 6], epoch=2, batch=7))[0]
    same = train.__getitems__(KeyedBatch([4, 5, 6], epoch=2, batch=7))[0]
    other = train.__getitems__(KeyedBatch([4, 5, 6], epoch=2, batch=8))[0]
    plain = train.__getitems__([4, 5, 6])[0]  # evaluation: no augmentation
    assert torch.equal(batch, same) and not torch.equal(batch, other)
    torch.testing.assert_close(plain, dataset.__getitems__([4, 5, 6])[0])


def test_each_rank_keys_its_batches_by_their_global_index():
    batches = [[0, 1], [2, 3], [4, 5]]
    keyed = list(KeyedBatchSampler(batches, num_replicas=2, rank=1))
    assert [k.batch for k in keyed] == [1, 3, 5] and [list(k) for k in keyed] == batches


def test_pipeline_choice_and_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert _cifar(tmp_path).data_pipeline == "device"
    assert _cifar(tmp_path, pipeline="workers").data_pipeline == "workers"
    jitter = [{"name": "ColorJitter", "args": {"brightness": 0.2}}]
    assert _cifar(tmp_path, augment=jitter).data_pipeline == "workers"
    with pytest.raises(PlpDataError, match=r"augment\[0\]: ColorJitter.*no batched version"):
        _ = _cifar(tmp_path, augment=jitter, pipeline="device").data_pipeline
    with pytest.raises(PlpDataError, match="pipeline must be one of"):
        _cifar(tmp_path, pipeline="gpu")
    monkeypatch.setattr(plp_data._base, "device_memory", lambda device: 1000)
    assert _cifar(tmp_path).data_pipeline == "workers"  # does not fit a quarter of 1000 bytes


def test_a_split_larger_than_the_device_is_served_from_host_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    stored = _cifar(tmp_path, pipeline="device", val_fraction=0.0)
    expected = [b[0] for b in stored.train_dataloader()]
    monkeypatch.setattr(plp_data._base, "device_memory", lambda device: 1000)
    hosted = _cifar(tmp_path, pipeline="device", val_fraction=0.0)
    got = [b[0] for b in hosted.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


def test_device_path_trains_with_the_pk_sampler(tmp_path: Path):
    sampler = {"name": "pk", "args": {"classes_per_batch": 4, "samples_per_class": 2}}
    dm = _cifar(tmp_path, sampler=sampler, val_fraction=0.0)
    images, labels = next(iter(dm.train_dataloader()))
    assert dm.data_pipeline == "device" and images.shape == (8, 3, 32, 32)
    assert sorted(np.unique(labels.numpy(), return_counts=True)[1].tolist()) == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"name": "RandomCrop", "args": {"padding": 4, "padding_mode": "reflect"}}, "RandomCrop"),
        ({"name": "Pad", "args": {"padding": [1, 2, 3]}}, "padding must be"),
        ({"name": "Pad", "args": {}}, r"Pad\(\{\}\) not supported"),
        ({"name": "RandomCrop", "args": {"size": "big"}}, "size must be"),
        ({"name": "RandomHorizontalFlip", "args": {"q": 1}}, "not supported"),
    ],
)
def test_unsupported_or_bad_steps_name_the_step(step: dict, message: str):
    spec = ResolvedTransforms(CIFAR10_MEAN, CIFAR10_STD, None, (32, 32), (step,), 0.0)
    with pytest.raises(PlpDataError, match=r"augment\[0\]: .*" + message):
        device_augmentation(spec)


def test_a_crop_larger_than_the_image_names_both_sizes(tmp_path: Path):
    # Found when the datamodule is built, before any run starts (both data paths).
    with pytest.raises(PlpDataError, match=r"RandomCrop of 40x40 is larger than the 32x32 images"):
        _cifar(tmp_path, augment=[{"name": "RandomCrop", "args": {"size": 40}}], val_fraction=0)


def test_bad_device_dataset_inputs_raise():
    with pytest.raises(PlpDataError, match="uint8"):
        DeviceImageDataset(np.zeros((2, 4, 4), np.float32), [0, 1], (0.5,), (0.5,))
    with pytest.raises(PlpDataError, match="2 images but 3 labels"):
        DeviceImageDataset(np.zeros((2, 4, 4), np.uint8), [0, 1, 2], (0.5,), (0.5,))
    with pytest.raises(PlpDataError, match="one value per channel"):
        DeviceImageDataset(np.zeros((2, 4, 4), np.uint8), [0, 1], (0.5, 0.5), (0.5, 0.5))


class _Recorder(pl.LightningModule):
    """A linear classifier that records every training batch it sees, by epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
        self.seen: dict[int, list[torch.Tensor]] = {}

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        self.seen.setdefault(self.current_epoch, []).append(batch[0].clone())
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Never called (no validation part); present so Lightning accepts the val loader."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(dm: pl.LightningDataModule, epochs: int, model: _Recorder, **kwargs: Any) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        **kwargs,
    )
    trainer.fit(model, datamodule=dm)
    return trainer


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_a_resumed_fit_sees_the_augmented_batches_of_an_uninterrupted_one(tmp_path: Path):
    def datamodule() -> pl.LightningDataModule:
        return _cifar(tmp_path / "data", val_fraction=0.0, random_erasing=0.5)

    whole = _Recorder()
    _fit(datamodule(), 2, whole, enable_checkpointing=False)
    first = _Recorder()
    trainer = _fit(datamodule(), 1, first, default_root_dir=tmp_path / "run")
    checkpoint = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    resumed = _Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        default_root_dir=tmp_path / "run",  # the same checkpoint folder, as plp --resume
    )
    trainer.fit(resumed, datamodule=datamodule(), ckpt_path=checkpoint, weights_only=True)
    assert list(resumed.seen) == [1]
    for epoch, model in ((0, first), (1, resumed)):
        assert len(model.seen[epoch]) == len(whole.seen[epoch]) == 5
        for batch, again in zip(whole.seen[epoch], model.seen[epoch], strict=True):
            assert torch.equal(batch, again)
    assert not torch.equal(whole.seen[0][0], whole.seen[1][0])
