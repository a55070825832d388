"""bench/search.py's ``pipeline`` section: plp's index + search against a plain loop.

Both sides read the same JPEG files (decoded with PIL, resized, ``ToTensor`` + ``Normalize``
for the loop; ``plp_data.Preprocessing`` for plp), embed them in batches of 64 with the same
checkpoint on the CPU, build an exact inner-product index of the gallery and search it with the
queries (k = 10). plp: ``plp_pipelines.index`` (embeds the gallery, writes ``index/``) then
``plp_pipelines.search`` (embeds the queries, checks the checkpoint's sha256, writes
``results.json``; ``draw=False``: the PNG grid is not drawn). The loop: ``model.embed(x)`` +
``faiss.IndexFlatIP``, nothing written. Best of ``repeats`` runs, turns alternated.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 64


def make_run(folder: Path, size: int) -> tuple[Path, Path, Path]:
    """Train a small csv_example run for one epoch; return (run, gallery folder, query folder)."""
    from plp_data.testing import write_csv_dataset
    from plp_pipelines import load_config, train

    csv = write_csv_dataset(
        folder / "data",
        train_classes=range(8),
        validation_classes=range(8, 8 + size // 16),
        per_class=16,
        size=(96, 96),
    )
    config = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "csv_example.toml",
        [
            f"data.args.path={csv}",
            "data.args.image_size=[64, 64]",
            "trainer.epochs=1",
            "evaluate.after_training=false",
            "trainer.accelerator=cpu",
        ],
    )
    run = train(config, runs_root=folder / "runs", progress_bar=False).run_dir
    images = folder / "data" / "images"
    queries = folder / "queries"
    queries.mkdir()
    for index, path in enumerate(sorted(images.rglob("*.jpg"))[::8]):
        (queries / f"{index}.jpg").write_bytes(path.read_bytes())
    return run, images, queries


def plain_loop(run: Path, gallery: Path, queries: Path) -> float:
    """Seconds of the plain loop: PIL + torchvision transforms, model.embed, IndexFlatIP."""
    import faiss
    import torch
    from PIL import Image
    from torchvision import transforms

    from plp_pipelines._checkpoints import load_model

    start = time.perf_counter()
    checkpoint = next((run / "checkpoints").glob("epoch=*.ckpt"))
    model = load_model(checkpoint).eval()
    transform = transforms.Compose(
        [
            transforms.Resize([64, 64]),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )

    def embed(files: list[Path]) -> np.ndarray:
        parts = []
        with torch.no_grad():
            for begin in range(0, len(files), BATCH):
                batch = torch.stack(
                    [transform(Image.open(f).convert("RGB")) for f in files[begin : begin + BATCH]]
                )
                parts.append(model.embed(batch).numpy())
        features = np.concatenate(parts)
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    index = faiss.IndexFlatIP(64)
    index.add(embed(sorted(gallery.rglob("*.jpg"))))
    index.search(embed(sorted(queries.glob("*.jpg"))), 10)
    return time.perf_counter() - start


def plp(run: Path, gallery: Path, queries: Path) -> float:
    """Seconds of plp_pipelines.index + plp_pipelines.search on the same files."""
    import plp_pipelines

    start = time.perf_counter()
    plp_pipelines.index(run, images=gallery, name="bench")
    plp_pipelines.search(run, index="bench", query=queries, draw=False)
    return time.perf_counter() - start


def bench_pipeline(sizes: tuple[int, ...], folder: Path, repeats: int = 3) -> None:
    """Print the table: images, plp seconds, loop seconds, loop / plp (throughput ratio)."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    print("| gallery + queries | plp index + search s | plain loop s | throughput ratio |")
    print("|---|---:|---:|---:|")
    for size in sizes:
        run, gallery, queries = make_run(folder / str(size), size)
        counts = (len(list(gallery.rglob("*.jpg"))), len(list(queries.glob("*.jpg"))))
        best: dict[str, Any] = {"plp": float("inf"), "loop": float("inf")}
        for _ in range(repeats):
            best["loop"] = min(best["loop"], plain_loop(run, gallery, queries))
            best["plp"] = min(best["plp"], plp(run, gallery, queries))
        print(
            f"| {counts[0]} + {counts[1]} | {best['plp']:.2f} | {best['loop']:.2f} | "
            f"{best['loop'] / best['plp']:.2f} |"
        )
