"""Training throughput (images/s): plp's CIFAR recipe on both data paths vs a plain PyTorch loop.

The bench writes CIFAR-10 in its real pickle format (random 32x32 images) and builds the
datamodule and model from ``configs/cifar.toml`` (data root, ``val_fraction = 0`` and
``pipeline`` overridden), then trains them with a Lightning Trainer set up as plp's train
pipeline sets it up (the config's precision and ``deterministic``, plp's samplers, the
``DeviceSpeedups`` callback), once per data path: ``device`` (uint8 tensors augmented in whole
batches) and ``workers`` (PIL transforms in ``num_workers`` DataLoader workers). The floor is a
plain PyTorch loop over the same architecture (a fresh model, same seed) and loss, with SGD, on
batches that are already on the device, at the same batch size and precision (autocast;
channels-last and TF32 on CUDA). "data only" rows iterate each path's training loader with no
model. Each figure is the best of ``--rounds`` alternating rounds of one timed epoch after a
warm-up epoch; ratio = plp / floor (target >= 0.9 on the CPU, >= 0.85 on a GPU). With
``--compile`` plp trains with ``[trainer] compile = true`` and the floor compiles the same
networks (``torch.compile``; the warm-up epoch pays the compile).

    uv run python bench/train_throughput.py --sizes small               # make bench (CPU)
    uv run python bench/train_throughput.py --sizes all                 # the README table
    uv run python bench/train_throughput.py --sizes all --device cuda   # on a GPU
    uv run python bench/train_throughput.py --sizes all --device cuda --compile
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from plp_data.testing import write_cifar_batches
from plp_pipelines import load_config
from plp_pipelines._build import build_datamodule, build_model
from plp_pipelines._compile import compile_model
from plp_pipelines._devices import DeviceSpeedups, resolve_precision

warnings.filterwarnings("ignore")
OVERRIDES: list[str] = []  # set by main (the batch size of the chosen size)

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "cifar.toml"
# (batch size, batches per timed epoch) by size and device; None: the config's batch size. A
# ResNet-18 trains at tens of images/s on a small CPU, so the CPU sizes are small.
SIZES: dict[str, dict[str, tuple[int | None, int]]] = {
    "small": {"cpu": (32, 2), "cuda": (None, 80)},
    "all": {"cpu": (None, 4), "cuda": (None, 390)},
}


class EpochTimer(pl.Callback):
    """Records the wall time of each training epoch (after the device finished its work)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.images: list[int] = []
        self._start = 0.0
        self._count = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _synchronize(pl_module.device)
        self._start, self._count = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, i: int):
        self._count += len(batch[1])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _synchronize(pl_module.device)
        self.times.append(time.perf_counter() - self._start)
        self.images.append(self._count)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _config(root: Path, pipeline: str, batches: int, device: str) -> Any:
    overrides = [
        *OVERRIDES,
        f"data.args.root={root}",
        "data.args.val_fraction=0.0",
        f"data.args.pipeline={pipeline}",
        "trainer.epochs=2",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
    ]
    return load_config(CONFIG, overrides)


def plp_images_per_second(
    root: Path, pipeline: str, batches: int, device: str
) -> tuple[float, str]:
    """Return images/s of the second (timed) epoch of plp's training, and the path it used."""
    config = _config(root, pipeline, batches, device)
    pl.seed_everything(config.seed, verbose=False)
    datamodule = build_datamodule(config)
    model = build_model(config, datamodule)
    if config.trainer.compile:
        compile_model(model)
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator=config.trainer.accelerator,
        devices=1,
        precision=resolve_precision(config.trainer.precision, config.trainer.accelerator),  # type: ignore[arg-type]
        deterministic=config.trainer.deterministic,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer, DeviceSpeedups(config.trainer.deterministic)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return timer.images[-1] / timer.times[-1], datamodule.data_pipeline


def data_only_images_per_second(root: Path, pipeline: str, batches: int, device: str) -> float:
    """Return images/s of iterating the training loader (batches on the device, no model)."""
    config = _config(root, pipeline, batches, device)
    datamodule = build_datamodule(config)
    target = torch.device(device)
    if pipeline == "device":  # serve on the device as under a Trainer
        datamodule.data_device = lambda: target  # type: ignore[method-assign]
    loader = datamodule.train_dataloader()
    best = 0.0
    for _ in range(2):  # the first pass starts the workers
        count, start = 0, time.perf_counter()
        for i, (images, labels) in enumerate(loader):
            images = images.to(target, non_blocking=True)
            count += len(labels)
            if i + 1 == batches:
                break
        _synchronize(target)
        best = max(best, count / (time.perf_counter() - start))
    return best


def floor_images_per_second(root: Path, batches: int, device: str) -> float:
    """Return images/s of a plain loop on batches already on the device (same model and loss)."""
    config = _config(root, "device", batches, device)
    pl.seed_everything(config.seed, verbose=False)
    datamodule = build_datamodule(config)
    model = build_model(config, datamodule).to(device)
    if config.trainer.compile:
        compile_model(model)
    precision = resolve_precision(config.trainer.precision, config.trainer.accelerator)
    target = torch.device(device)
    if target.type == "cuda":
        torch.set_float32_matmul_precision("high")
        model = model.to(memory_format=torch.channels_last)
    size = datamodule.batch_size
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(size, 3, 32, 32, generator=generator).to(device) for _ in range(4)]
    if target.type == "cuda":
        images = [x.contiguous(memory_format=torch.channels_last) for x in images]
    labels = [torch.randint(0, 10, (size,), generator=generator).to(device) for _ in range(4)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(enabled=precision == "16-mixed")

    def epoch() -> float:
        _synchronize(target)
        start = time.perf_counter()
        for i in range(batches):
            autocast = (
                torch.autocast(target.type, dtype=dtype) if dtype else contextlib.nullcontext()
            )
            with autocast:
                _, logits = model.head(model.backbone(images[i % 4]))
                loss = F.cross_entropy(logits.float(), labels[i % 4], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        _synchronize(target)
        return batches * size / (time.perf_counter() - start)

    model.train()
    epoch()  # warm-up
    return epoch()


def _rate(images_per_second: float) -> str:
    return f"{images_per_second:,.0f}" if images_per_second >= 100 else f"{images_per_second:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="[trainer] compile = true")
    args = parser.parse_args()
    if args.compile:
        OVERRIDES.append("trainer.compile=true")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    size, batches = SIZES[args.sizes][args.device]
    if size is not None:
        OVERRIDES.append(f"data.args.batch_size={size}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        config = _config(root, "device", 1, args.device)
        batch_size = int(config.data.args["batch_size"])
        # Full-size CIFAR-10 (50,000 training images) on a GPU; on a CPU enough for the epoch.
        per_batch = 10_000 if args.device == "cuda" else batch_size * batches
        write_cifar_batches(root, per_batch=per_batch, num_test=1_000)
        precision = resolve_precision(config.trainer.precision, config.trainer.accelerator)
        rows: dict[str, float] = {}
        used: dict[str, str] = {}
        for _ in range(args.rounds):  # alternate, keep the best of each
            rows["floor"] = max(
                rows.get("floor", 0), floor_images_per_second(root, batches, args.device)
            )
            for pipeline in ("device", "workers"):
                speed, used[pipeline] = plp_images_per_second(root, pipeline, batches, args.device)
                rows[pipeline] = max(rows.get(pipeline, 0), speed)
                data = data_only_images_per_second(root, pipeline, batches, args.device)
                rows[f"data {pipeline}"] = max(rows.get(f"data {pipeline}", 0), data)
    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    )
    print(
        f"\ntrain throughput, resnet18_cifar, CIFAR-10 format, {batches} batches of {batch_size}, "
        f"precision {precision}, deterministic {config.trainer.deterministic}, "
        f"compile {config.trainer.compile}, {args.device} "
        f"({device}, {torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    print("| what | images/s | / floor |\n| --- | ---: | ---: |")
    floor = rows["floor"]
    print(f"| plain loop, batches on the device (floor) | {_rate(floor)} | 1.00 |")
    for pipeline in ("device", "workers"):
        speed = rows[pipeline]
        what = f"plp train, pipeline={pipeline} (used: {used[pipeline]})"
        print(f"| {what} | {_rate(speed)} | {speed / floor:.2f} |")
    for pipeline in ("device", "workers"):
        what = f"plp train loader alone, pipeline={pipeline}"
        print(f"| {what} | {_rate(rows[f'data {pipeline}'])} | - |")


if __name__ == "__main__":
    main()
