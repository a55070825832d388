"""The dependency direction of the map (shared/design.md), checked on every module's imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"

LIGHTNING = {"pytorch_lightning", "lightning", "lightning_fabric"}
SIBLINGS = {
    "plp_core",
    "plp_losses",
    "plp_data",
    "plp_models",
    "plp_eval",
    "plp_viz",
    "plp_pipelines",
}

# What each package's runtime code may import, besides the standard library and itself.
ALLOWED: dict[str, set[str]] = {
    "plp_core": set(),  # the standard library only
    "plp_losses": {"torch", "plp_core"},
    "plp_data": {
        "torch",
        "torchvision",
        "pytorch_lightning",
        "sklearn",
        "numpy",
        "PIL",
        "plp_core",  # the registry, bounds, the root error
        "scipy",  # Cars196's cars_annos.mat
    },
    "plp_models": {
        "torch",
        "torchvision",
        "pytorch_lightning",
        "torchmetrics",
        "plp_core",
        "plp_losses",
        "plp_eval",  # retrieval validation ranks with the same exact ranking as evaluation
        "numpy",  # the validation query mask and labels
        "timm",
        "huggingface_hub",  # timm's hub errors, for the offline message
    },
    "plp_eval": {
        "numpy",
        "numba",
        "faiss",
        "threadpoolctl",
        "torch",
        "torchmetrics",
        "sklearn",
        "scipy",
        "plp_core",
    },
    "plp_viz": {
        "numpy",
        "numba",
        "torch",
        "umap",
        "matplotlib",
        "captum",
        "torchviz",
        "graphviz",
        "tqdm",
        "sklearn",
        "PIL",
        "bokeh",  # the interactive embedding of self-contained HTML pages
        "plp_core",  # the registry, bounds, the root error
    },
    "plp_pipelines": {
        *(SIBLINGS - {"plp_pipelines"}),
        "pydantic",
        "pytorch_lightning",
        "torch",
        "numpy",
        "matplotlib",
        "onnx",  # export writes the model's preprocessing into the ONNX file's metadata
        "onnxruntime",  # export checks the ONNX model against PyTorch
        "lightning_fabric",  # embed: Fabric runs the model on every device (DDP) without a Trainer
        "tqdm",  # embed's progress bar
        "mlflow",  # the MLflow logger, an optional extra: plp-pipelines[mlflow]
        "wandb",  # the W&B logger, an optional extra: plp-pipelines[wandb]
    },
}

# Import name -> distribution name, where they differ.
DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "faiss": "faiss-cpu",
    "umap": "umap-learn",
    "pytorch_lightning": "pytorch-lightning",
    "lightning_fabric": "pytorch-lightning",  # shipped inside pytorch-lightning
    "mlflow": "mlflow-skinny",
    **{name: name.replace("_", "-") for name in SIBLINGS},
}
# Distributions that arrive with a declared one (graphviz with torchviz, scipy with scikit-learn).
TRANSITIVE = {"graphviz": "torchviz", "scipy": "scikit-learn", "huggingface_hub": "timm"}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in ``path`` (function bodies too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_imports(module: str) -> dict[Path, set[str]]:
    source = PACKAGES / module.replace("_", "-") / "src" / module
    third_party: dict[Path, set[str]] = {}
    for path in sorted(source.rglob("*.py")):
        names = imported_modules(path) - set(sys.stdlib_module_names) - {module, "__future__"}
        third_party[path.relative_to(ROOT)] = names
    return third_party


def declared_dependencies(module: str) -> set[str]:
    pyproject = PACKAGES / module.replace("_", "-") / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():  # imported only on use
        requirements += extra
    return {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower() for req in requirements}


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_package_imports_only_what_the_map_allows(module: str) -> None:
    wrong = {
        str(path): sorted(names - ALLOWED[module])
        for path, names in package_imports(module).items()
        if names - ALLOWED[module]
    }
    assert not wrong, f"{module} imports what the map does not allow: {wrong}"


@pytest.mark.parametrize("module", ["plp_core", "plp_losses", "plp_eval", "plp_viz"])
def test_lightning_free_packages(module: str) -> None:
    for path, names in package_imports(module).items():
        assert not names & LIGHTNING, f"{path} imports Lightning"


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_every_import_is_a_declared_dependency(module: str) -> None:
    declared = declared_dependencies(module)
    used = set().union(*package_imports(module).values())
    missing = set()
    for name in used:
        distribution = DISTRIBUTION.get(name, name).lower()
        if distribution not in declared and TRANSITIVE.get(name) not in declared:
            missing.add(distribution)
    assert not missing, f"{module} imports undeclared distributions: {sorted(missing)}"


def test_plp_losses_declares_torch_and_plp_core_only() -> None:
    assert declared_dependencies("plp_losses") == {"torch", "plp-core"}


def test_plp_core_declares_nothing() -> None:
    assert declared_dependencies("plp_core") == set()


@pytest.mark.parametrize("module", sorted(SIBLINGS - {"plp_core"}))
def test_every_package_stands_on_plp_core_not_on_a_sibling_for_vocabulary(module: str) -> None:
    """The ground floor is plp-core: only plp-models (the loss in the training step) and
    plp-pipelines may depend on plp-losses."""
    declared = declared_dependencies(module)
    assert "plp-core" in declared
    if module not in {"plp_models", "plp_pipelines"}:
        assert "plp-losses" not in declared


def test_nothing_but_tasks_and_tests_imports_plp_pipelines() -> None:
    for module in SIBLINGS - {"plp_pipelines"}:
        for path, names in package_imports(module).items():
            assert "plp_pipelines" not in names, f"{path} imports plp_pipelines"


def test_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import pytorch_lightning.core\n    from umap import UMAP\n")
    assert imported_modules(probe) == {"pytorch_lightning", "umap"}
