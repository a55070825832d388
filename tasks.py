"""plp's invoke tasks: ``uv run invoke --list``; each task's docstring is its ``--help``.

Heavy libraries (torch, Lightning, umap) are imported inside the task bodies only, so that
listing the tasks is instant. A user error (bad config, missing run, bad argument) ends the task
with one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invoke import Context, Exit

# The developer tasks (invoke lists them) and ``task``: invoke's, with SHORT_FLAGS (dev_tasks).
from dev_tasks import bench, lint, task, test  # noqa: F401

DEFAULT_CONFIG = "configs/digits.toml"
RUNS = "runs"  # = plp_pipelines.RUNS_ROOT (test_tasks checks); `invoke --list` imports no plp


@contextmanager
def _user_facing(verbose: bool = False) -> Iterator[None]:
    """Turn plp's bad-input errors into one line on stderr and exit code 2.

    A run stopped by SIGTERM or Ctrl-C exits with 143 or 130 (128 + the signal) after its one
    line, so that schedulers see the preemption. Unless ``verbose``, Lightning's tips, device
    lines and known-harmless warnings are kept quiet. A parent's W&B service is not used.
    """
    from plp_core import PlpError
    from plp_pipelines import StoppedError

    # A W&B service that a parent process started (a notebook, a test runner: WANDB_SERVICE
    # names it) would keep a run this command leaves open, killed, and refuse it to the resumed
    # command ("run ID ... is in use"): each command starts its own.
    os.environ.pop("WANDB_SERVICE", None)
    if not verbose:
        from plp_pipelines._console import quiet_console

        quiet_console()
    try:
        yield
    except StoppedError as error:
        raise Exit(f"plp: {error}", code=error.exit_code) from None
    except PlpError as error:  # the root of every bad-input error of every plp package
        raise Exit(f"plp: error: {error}", code=2) from None


def _expand(pattern: str) -> list[str]:
    """Return the files a glob pattern matches, sorted; a plain path is returned as it is."""
    import glob

    return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]


def _check_run(run: str | None, runs: str, checkpoint: str | None) -> None:
    """Raise RunError now if the run or its checkpoint is missing, before torch is imported.

    The pipelines open the run again; this only moves their first error to the first second.
    """
    from plp_pipelines._run import Run

    Run.open(run, runs_root=runs, checkpoint=checkpoint).checkpoint(checkpoint)


def _interactive() -> bool:
    """Return whether stdout is a terminal (progress bars only then; logs stay readable)."""
    return sys.stdout.isatty()


def _say(*lines: str) -> None:
    """Print for the user, from the main process only (DDP workers re-run this task)."""
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        print(*lines, sep="\n", flush=True)


@task(
    help={
        "config": f"TOML recipe (default: {DEFAULT_CONFIG})",
        "set": "override a key, e.g. --set trainer.epochs=3 (repeatable)",
        "runs": "folder of run directories (default: runs)",
        "skip_evaluate": "do not run the test pipeline after training, whatever "
        "[evaluate] after_training says",
        "resume": "continue the newest unfinished run of this config (one with a last.ckpt "
        "and no run.json) from its last checkpoint; --run names the run instead",
        "run": "with --resume: the run directory to continue",
        "verbose": "show Lightning's own messages and warnings",
        "seeds": "train one run per seed, e.g. --seeds 0,1,2, and summarise them across the "
        "seeds in <runs>/<name>/<timestamp>-seeds/summary.md",
        "repeats": "as --seeds with seeds 0 .. N-1",
    },
    iterable=["set_"],
)
def train(
    c: Context,
    config: str = DEFAULT_CONFIG,
    set_: list[str] | None = None,
    runs: str = RUNS,
    skip_evaluate: bool = False,
    resume: bool = False,
    run: str | None = None,
    verbose: bool = False,
    seeds: str | None = None,
    repeats: str | None = None,
) -> None:
    """Train the model a config describes; write a run directory; then test it if configured."""
    if seeds is not None or repeats is not None:
        _train_seeds(config, set_ or [], runs, skip_evaluate, resume, verbose, seeds, repeats)
        return
    with _user_facing(verbose):
        import plp_pipelines
        from plp_pipelines._prechecks import check_before_torch

        evaluate = False if skip_evaluate else None
        if run is not None and not resume:
            raise plp_pipelines.ConfigError("--run names the run to continue: add --resume")
        if resume:
            if set_:
                raise plp_pipelines.ConfigError("--resume continues a run as it was: drop --set")
            name = None if run is not None else plp_pipelines.load_config(config).name
            result = plp_pipelines.resume(
                run,
                name=name,
                runs_root=runs,
                evaluate=evaluate,
                progress_bar=_interactive(),
            )
        else:
            recipe = plp_pipelines.load_config(config, set_ or [])
            check_before_torch(recipe)  # unknown names, missing data: in the first second
            result = plp_pipelines.train(
                recipe, runs_root=runs, evaluate=evaluate, progress_bar=_interactive()
            )
    _say(
        "",
        f"run directory: {result.run_dir}",
        f"best checkpoint: {result.best_checkpoint}"
        + (
            f" ({result.monitor} = {result.best_score:.4f}, epoch {result.best_epoch})"
            if result.monitor and result.best_score is not None
            else " (the last epoch)"
        ),
        f"training batches: the {result.data_pipeline} data path",
    )
    if result.metrics:
        _say("", plp_pipelines.format_metrics_table(result.metrics))
        for name, metrics in result.metrics.get("datasets", {}).items():
            _say(
                "", f"on {name} ({metrics['folder']}):", plp_pipelines.format_metrics_table(metrics)
            )
        _say("", f"report: {result.run_dir / 'report.md'}")


def _train_seeds(
    config: str,
    overrides: list[str],
    runs: str,
    skip_evaluate: bool,
    resume: bool,
    verbose: bool,
    seeds: str | None,
    repeats: str | None,
) -> None:
    """``train --seeds`` / ``--repeats``: one run per seed, then the summary across them."""
    with _user_facing(verbose):
        import plp_pipelines

        if resume:
            raise plp_pipelines.ConfigError("--resume continues one run: drop --seeds/--repeats")
        chosen = plp_pipelines.seeds_of(seeds, repeats)
        result = plp_pipelines.train_seeds(
            config,
            chosen,
            overrides=overrides,
            runs_root=runs,
            evaluate=False if skip_evaluate else None,
            progress_bar=_interactive(),
            on_run=lambda seed, run: _say(f"seed {seed}: {run.run_dir}"),
        )
    _say("", plp_pipelines.summary_table(result.summary))
    _say("", f"summary: {result.folder / 'summary.md'}")


@task(
    help={
        "run_a": "the first run directory (A)",
        "run_b": "the second run directory (B), evaluated on the same test set",
        "method": "reid (default) or accuracy: the metrics compared",
        "permutations": "random sign flips of the paired randomisation test (default: 10000)",
        "resamples": "paired bootstrap resamples of the interval of A - B (default: 1000)",
        "seed": "seed of the resampling and the sign flips (default: 0)",
        "runs": "folder of run directories; output goes to <runs>/compare/<timestamp>/",
    }
)
def compare(
    c: Context,
    run_a: str,
    run_b: str,
    method: str = "reid",
    permutations: int = 10000,
    resamples: int = 1000,
    seed: int = 0,
    runs: str = RUNS,
) -> None:
    """Compare two evaluated runs metric by metric: A - B, its interval, a paired p-value."""
    with _user_facing():
        import plp_pipelines

        compared = plp_pipelines.compare_runs(
            run_a,
            run_b,
            method=method,
            permutations=permutations,
            resamples=resamples,
            seed=seed,
            runs_root=runs,
        )
    _say(compared.table, "", f"written: {compared.folder / 'compare.json'} and compare.md")


@task(
    help={
        "run": "run directory (default: the newest run)",
        "checkpoint": "a checkpoint to evaluate instead of the run's best",
        "method": "an evaluation method (accuracy, reid, clustering, ...) or all: the run's "
        "[evaluate] methods and the UMAP (default: all); one method draws no UMAP",
        "runs": "folder of run directories (default: runs)",
        "data": "evaluate on another dataset instead (cross-domain): a config file (its [data] "
        "and [evaluate]) or a datamodule name; results in <run>/eval/<dataset>/",
        "set": "override an [evaluate] key for this evaluation, e.g. --set evaluate.max_rank=20 "
        "(repeatable; recorded in metrics.json)",
        "verbose": "show third-party messages and warnings",
    },
    iterable=["set_"],
)
def evaluate(
    c: Context,
    run: str | None = None,
    checkpoint: str | None = None,
    method: str = "all",
    runs: str = RUNS,
    data: str | None = None,
    set_: list[str] | None = None,
    verbose: bool = False,
) -> None:
    """Extract features of trainval and test, compute and print metrics, draw plots and UMAP."""
    with _user_facing(verbose):
        import plp_pipelines

        plp_pipelines.check_methods([method], flag="--method", extra=("all",))
        _check_run(run, runs, checkpoint)
        methods = None if method == "all" else [method]
        if data is not None:
            if set_:
                raise plp_pipelines.ConfigError(
                    "--set applies to the run's own evaluation, not --data"
                )
            plp_pipelines.evaluate_datasets(
                run,
                [data],
                checkpoint=checkpoint,
                methods=methods,
                runs_root=runs,
                on_metrics=lambda name, m: _say(
                    f"on {name}:", plp_pipelines.format_metrics_table(m, methods)
                ),
            )
            return
        # The metrics are printed as soon as they are known; plots (UMAP: all) and files follow.
        metrics = plp_pipelines.evaluate(
            run,
            checkpoint=checkpoint,
            methods=methods,
            overrides=set_ or (),
            runs_root=runs,
            on_metrics=lambda m: _say(plp_pipelines.format_metrics_table(m, methods)),
        )
    plots = len(metrics["plots"])
    _say("", f"written: metrics.json, report.md, report.html and {plots} plots of the run")
    if "audit" in metrics:
        totals = metrics["audit"]["totals"]
        _say(
            f"audit: {totals['mislabeled']} likely mislabelled images, "
            f"{totals['duplicate_identities']} candidate duplicate identities, "
            f"{totals['leakage']} near-duplicates across splits: audit.json"
        )


@task(
    help={
        "run": "run directory (default: the newest run)",
        "algorithm": "integrated_gradients, saliency, input_x_gradient, gradient_shap, "
        "occlusion, layer_gradcam, layer_integrated_gradients or layer_conductance "
        "(default: the config's [explain] algorithm)",
        "samples": "how many test images (default: the config's [explain] samples)",
        "layer": "dotted module name for layer methods, e.g. backbone.features.6 "
        "(default: the model's last Conv2d)",
        "checkpoint": "a checkpoint instead of the run's best",
        "runs": "folder of run directories (default: runs)",
        "pairs": "explain the worst queries instead: why their false top match and their best "
        "true match match them (both images of each pair attributed): plots/pair_explain.png",
        "queries": "with --pairs: how many of the worst queries (default: 4)",
        "set": "override an [explain] key for this call, e.g. --set explain.samples=8 "
        "(repeatable; the flags above win)",
    },
    iterable=["set_"],
)
def explain(
    c: Context,
    run: str | None = None,
    algorithm: str | None = None,
    samples: int = 0,
    layer: str | None = None,
    checkpoint: str | None = None,
    runs: str = RUNS,
    pairs: bool = False,
    queries: int = 0,
    set_: list[str] | None = None,
) -> None:
    """Draw captum attributions over test images of a run, or (--pairs) of its worst matches."""
    with _user_facing():
        import plp_pipelines

        _check_run(run, runs, checkpoint)
        if pairs:
            path = plp_pipelines.explain_pairs(
                run,
                queries=queries or None,
                algorithm=algorithm,
                layer=layer,
                checkpoint=checkpoint,
                runs_root=runs,
                overrides=set_ or (),
            )
        else:
            path = plp_pipelines.explain(
                run,
                algorithm=algorithm,
                samples=samples or None,
                layer=layer,
                checkpoint=checkpoint,
                runs_root=runs,
                overrides=set_ or (),
            )
    _say(f"attributions: {path}")


@task(
    help={
        "config": "TOML recipe whose model to draw",
        "run": "draw a run's model instead (default output: <run>/plots/graph/)",
        "runs": "folder of run directories (default: runs)",
        "output": "folder for model.gv, model.svg, model.png and layers.txt",
    }
)
def graph(
    c: Context,
    config: str | None = None,
    run: str | None = None,
    runs: str = RUNS,
    output: str | None = None,
) -> None:
    """Draw the model's architecture with torchviz (.gv always; .svg/.png where dot exists)."""
    with _user_facing():
        import plp_pipelines

        if config is None and run is None:
            config = DEFAULT_CONFIG
        files = plp_pipelines.graph(config, run=run, runs_root=runs, output_dir=output)
    _say(f"graph source: {files.gv}")
    for drawn in (files.svg, files.png):
        if drawn is not None:
            _say(f"drawing: {drawn}")


@task(
    help={
        "checkpoint": "a checkpoint, or a quoted glob such as 'runs/digits/*/checkpoints/"
        "*.ckpt'; repeat for more (two or more of one architecture in all)",
        "split": "trainval or test (default: the config's [align] split)",
        "runs": "folder of run directories; output goes to <runs>/align/<timestamp>/",
        "output": "folder for the panels instead",
        "set": "override an [align] key for this call, e.g. --set align.max_samples=2000 "
        "(repeatable; --split wins)",
    },
    iterable=["checkpoint", "set_"],
)
def align(
    c: Context,
    checkpoint: list[str] | None = None,
    split: str | None = None,
    runs: str = RUNS,
    output: str | None = None,
    set_: list[str] | None = None,
) -> None:
    """AlignedUMAP of one split's features under several checkpoints, panels on shared axes."""
    paths = [match for pattern in checkpoint or [] for match in _expand(pattern)]
    with _user_facing():
        import plp_pipelines

        path = plp_pipelines.align(
            paths, split=split, runs_root=runs, output_dir=output, overrides=set_ or ()
        )
    _say(f"aligned UMAP: {path}")


@task(
    help={
        "run": "run directory (default: the newest run)",
        "format": "onnx (default)",
        "inputs": "what the check against PyTorch runs on: test (the run's first test images, "
        "default) or random (no dataset needed)",
        "input": "uint8 (default: pixels in, the run's resize size, normalisation in the model) "
        "or float (normalised tensors in)",
        "checkpoint": "a checkpoint instead of the run's best",
        "runs": "folder of run directories (default: runs)",
    }
)
def export(
    c: Context,
    run: str | None = None,
    format: str = "onnx",
    inputs: str = "test",
    input: str = "uint8",
    checkpoint: str | None = None,
    runs: str = RUNS,
) -> None:
    """Export the embedding model to <run>/export/model.onnx and check it against PyTorch."""
    with _user_facing():
        import plp_pipelines
        from plp_pipelines._export_pixels import check_export_arguments

        check_export_arguments(format, inputs, input)  # before the run, as a config error
        _check_run(run, runs, checkpoint)
        result = plp_pipelines.export(
            run, format=format, inputs=inputs, input=input, checkpoint=checkpoint, runs_root=runs
        )
    inputs_checked = "test images" if result.inputs == "test" else "random inputs"
    meta = {key: json.loads(value) for key, value in result.metadata.items()}
    takes = (
        f"{meta['layout']} images of {meta['image_size'][0]}x{meta['image_size'][1]} pixels"
        if result.input == "uint8"
        else "normalised float images (batch, C, H, W)"
    )
    _say(
        f"exported: {result.path} (takes {takes})",
        f"max abs diff vs PyTorch: {result.max_abs_diff:.2g} on {result.batch_sizes[0]} "
        f"{inputs_checked} (batch sizes {', '.join(map(str, result.batch_sizes))})",
    )


@contextmanager
def _warned() -> Iterator[None]:
    """Print plp's warnings (unreadable images skipped) as one ``plp: warning:`` line each."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    if os.environ.get("LOCAL_RANK", "0") != "0":  # DDP workers: the main process says it
        return
    for warning in caught:
        if issubclass(warning.category, UserWarning) and "unreadable image" in str(warning.message):
            print(f"plp: warning: {warning.message}", file=sys.stderr, flush=True)


def _reading(strict: bool, checkpoint: str | None, runs: str) -> Any:
    """Return how embed, index and search read the run and the images (``Reading``)."""
    from plp_pipelines import Reading

    return Reading(checkpoint=checkpoint, runs_root=runs, strict=strict, progress=_interactive())


_IMAGE_TASK_HELP = {
    "run": "run directory (default: the newest run)",
    "strict": "an unreadable image is an error (default: skipped with a warning)",
    "checkpoint": "a checkpoint instead of the run's best",
    "runs": "folder of run directories (default: runs)",
}


@task(
    help={
        "images": "a folder of images (recursively) or a dataset CSV",
        "out": "the .npz to write (default: <run>/embeddings/<folder or CSV name>.npz)",
        **_IMAGE_TASK_HELP,
    }
)
def embed(
    c: Context,
    images: str,
    run: str | None = None,
    out: str | None = None,
    strict: bool = False,
    checkpoint: str | None = None,
    runs: str = RUNS,
) -> None:
    """Embed every image of a folder or dataset CSV with a run's model, as its test images."""
    with _user_facing(), _warned():
        import plp_pipelines

        result = plp_pipelines.embed(
            run, images=images, out=out, reading=_reading(strict, checkpoint, runs)
        )
    _say(f"embedded {result.count} images: {result.path}")


@task(
    help={
        "images": "the gallery: a folder of images (recursively) or a dataset CSV",
        "name": "the index's name (default: the folder's or CSV's)",
        "kind": "flat (exact, default), ivf or hnsw (approximate, for millions of images)",
        **_IMAGE_TASK_HELP,
    }
)
def index(
    c: Context,
    images: str,
    run: str | None = None,
    name: str | None = None,
    kind: str = "flat",
    strict: bool = False,
    checkpoint: str | None = None,
    runs: str = RUNS,
) -> None:
    """Build a faiss index of a gallery of images in <run>/index/<name>/."""
    with _user_facing(), _warned():
        import plp_pipelines

        reading = _reading(strict, checkpoint, runs)
        result = plp_pipelines.index(run, images=images, name=name, kind=kind, reading=reading)
    recall = "" if result.kind == "flat" else f", recall@10 {result.recall_at_10:.3f} vs flat"
    _say(f"indexed {result.count} images ({result.kind}{recall}): {result.folder}")


@task(
    help={
        "index": "the name of an index built with `invoke index`",
        "query": "an image, a folder of images or a dataset CSV",
        "top_k": "results per query (default: 10)",
        "threshold": "distance past which a result is 'no match' (default: the run's, "
        "calibrated by `invoke evaluate --method verification`)",
        **_IMAGE_TASK_HELP,
    }
)
def search(
    c: Context,
    index: str,
    query: str,
    run: str | None = None,
    top_k: int = 10,
    threshold: float | None = None,
    strict: bool = False,
    checkpoint: str | None = None,
    runs: str = RUNS,
) -> None:
    """Search a run's index with query images: top-k gallery images, "no match" marked."""
    with _user_facing(), _warned():
        import plp_pipelines

        result = plp_pipelines.search(
            run, index=index, query=query, top_k=top_k, threshold=threshold,
            reading=_reading(strict, checkpoint, runs),
        )  # fmt: skip
    _say(*result.lines())
