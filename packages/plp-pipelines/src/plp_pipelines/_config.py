"""The TOML config schema: parsed once, validated by pydantic models with ``extra="forbid"``."""

from __future__ import annotations

import json
import re
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from plp_core import (
    BOOTSTRAP_RESAMPLES,
    DEFAULT_MAX_RANK,
    DEFAULT_MODEL,
    DEFAULT_TARGET_FMR,
    MAX_COUNT,
    RERANK_K1,
    RERANK_K2,
    RERANK_LAMBDA,
    RankingMetric,
    check_name,
    did_you_mean,
)
from plp_pipelines._errors import ConfigError
from plp_pipelines._runs import LATEST_FILE as LATEST

__all__ = [
    "AlignConfig",
    "CheckpointConfig",
    "EarlyStoppingConfig",
    "LoggingConfig",
    "Config",
    "DataConfig",
    "DistillConfig",
    "EvaluateConfig",
    "ExplainConfig",
    "LossTerm",
    "MemoryConfig",
    "PRECISIONS",
    "PROTOCOLS",
    "ModelConfig",
    "Named",
    "TrainerConfig",
    "apply_overrides",
    "config_to_toml",
    "load_config",
    "override_config",
    "validate_config",
]

Precision = Literal["auto", "64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
Protocol = Literal["trainval_test", "query_gallery", "test_leave_one_out"]
PROTOCOLS: tuple[str, ...] = typing.get_args(Protocol)


def _methods() -> Any:
    """Return the evaluation-method registry (imported on first use: it loads the methods)."""
    from plp_pipelines import _methods

    return _methods


# Sane maxima: values beyond them are typos or would allocate more than any machine has
# (a CMC curve of 10^12 ranks, a k-reciprocal set of 10^9 neighbours), found before a run starts.
MAX_EPOCHS = 100_000
MAX_DEVICES = 4096
MAX_EMBEDDING_SIZE = 65_536
MAX_RANK = 100_000
MAX_RERANK_K = 1_000
MAX_EXPLAIN_SAMPLES = 200  # one figure row each: matplotlib draws at most 2^16 pixels a side


class _Section(BaseModel):
    # NaN and infinities are refused in every number (NaN passes every bound: it fails each
    # comparison); integers are bounded where the section says, else by plp_core.MAX_COUNT.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Named(_Section):
    """A component chosen by registry name, with its keyword arguments."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class DataConfig(Named):
    """``[data]``: the datamodule (``plp_data.build_datamodule(name, **args)``)."""

    name: str = "digits"


class ModelConfig(_Section):
    """``[model]``: backbone, head and embedding size (unset: the model's own default)."""

    backbone: Named = Field(default_factory=lambda: Named(**DEFAULT_MODEL["backbone"]))
    head: Named = Field(default_factory=lambda: Named(**DEFAULT_MODEL["head"]))
    embedding_size: int | None = Field(default=None, ge=1, le=MAX_EMBEDDING_SIZE)


class MemoryConfig(_Section):
    """``memory``: a cross-batch memory (XBM) around a pair or triplet loss.

    It holds ``size`` past embeddings and is used from training step ``start_iteration`` on.
    """

    size: int = Field(ge=1, lt=2**31)
    start_iteration: int = Field(default=0, ge=0)


class LossTerm(Named):
    """One term of the training loss, multiplied by ``weight``.

    A pair or triplet loss may name a ``miner`` (``plp_losses.MINERS``) that chooses its pairs
    or triplets and a cross-batch ``memory``.
    """

    weight: float = 1.0
    miner: Named | None = None
    memory: MemoryConfig | None = None


class LossConfig(_Section):
    """``[loss]``: one loss (``name``, ``args``, ``miner``, ``memory``) or a weighted list.

    The list form, ``terms``, gives each term its own ``miner`` and ``memory``.
    """

    name: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    miner: Named | None = None
    memory: MemoryConfig | None = None
    terms: list[LossTerm] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> LossConfig:
        if (self.name is None) == (self.terms is None):
            raise ValueError("give either name (one loss) or terms (a weighted list), not both")
        if self.terms is not None and not self.terms:
            raise ValueError("terms must hold at least one loss")
        if self.terms is not None and (self.miner is not None or self.memory is not None):
            raise ValueError("with terms, give the miner and memory in the term they feed")
        return self

    def as_terms(self) -> list[LossTerm]:
        """Return the loss as a list of weighted terms."""
        if self.terms is not None:
            return self.terms
        assert self.name is not None
        return [LossTerm(name=self.name, args=self.args, miner=self.miner, memory=self.memory)]


class DistillConfig(_Section):
    """``[distill]``: train a student from a trained plp run (its best checkpoint, frozen).

    ``teacher``: the teacher's run directory (``runs/<config>/<timestamp>``). ``loss``:
    ``embedding_mse`` (with a linear projection when the sizes differ, dropped at export) or
    ``relational`` (RKD's distance matching). ``weight``: its weight beside the ``[loss]``.
    """

    teacher: str
    loss: Literal["embedding_mse", "relational"] = "relational"
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class EarlyStoppingConfig(_Section):
    """``[trainer] early_stopping``: stop when ``monitor`` has not improved for a while.

    ``patience`` counts validations (Lightning's ``EarlyStopping``); ``monitor`` defaults to
    the checkpoint's.
    """

    monitor: str | None = None
    patience: int = Field(default=3, ge=0)
    min_delta: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)


class TrainerConfig(_Section):
    """``[trainer]``: the Lightning Trainer settings that plp exposes, and training habits.

    ``val_every``: validate every N epochs. ``freeze_backbone_epochs``: train only the head
    for the first N epochs (backbone in eval mode: BatchNorm statistics frozen too). ``ema``:
    keep an exponential moving average of the weights with this decay, which validation,
    checkpoints and evaluation use. ``compile``: ``torch.compile`` the model's backbone for
    training and evaluation (checkpoints stay interchangeable with uncompiled models).
    """

    epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int = Field(default=1, ge=1, le=MAX_DEVICES)
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"] = "auto"
    precision: Precision = "auto"
    deterministic: bool = True
    log_every_n_steps: int = Field(default=10, ge=1, le=MAX_COUNT)
    gradient_clip_val: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    val_every: int = Field(default=1, ge=1)
    early_stopping: EarlyStoppingConfig | None = None
    freeze_backbone_epochs: int = Field(default=0, ge=0)
    ema: float | None = Field(default=None, gt=0.0, lt=1.0)
    compile: bool = False


class CheckpointConfig(_Section):
    """``[checkpoint]``: which checkpoint is the best.

    ``monitor``: the logged metric that chooses it (``val_loss``, ``val/mAP``, ``val/MAP@R``,
    ...; max for accuracies and retrieval metrics, min for losses); unset: ``val_loss`` when the
    run validates, else the last epoch. ``save_top_k``: how many of the best to keep (-1: all).
    """

    monitor: str | None = None
    save_top_k: int = Field(default=1, ge=-1)

    @field_validator("save_top_k")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (keep all) or at least 1")
        return value


class MlflowConfig(_Section):
    """``[logging.mlflow]``: where runs go (default: ``sqlite:///<runs>/mlflow.db``)."""

    tracking_uri: str | None = None
    experiment: str | None = None


class WandbConfig(_Section):
    """``[logging.wandb]``: project (default: the config name), entity, mode (offline)."""

    project: str | None = None
    entity: str | None = None
    mode: Literal["offline", "online", "disabled"] = "offline"


Logger = Literal["csv", "tensorboard", "mlflow", "wandb"]
DEFAULT_LOGGERS: tuple[Logger, ...] = ("csv", "tensorboard")


class LoggingConfig(_Section):
    """``[logging]``: the experiment loggers (Lightning's) and their settings."""

    loggers: list[Logger] = Field(default_factory=lambda: list(DEFAULT_LOGGERS))
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)


class EvaluateConfig(_Section):
    """``[evaluate]``: what the test pipeline computes.

    ``datasets``: other datasets to evaluate the run's model on as well (cross-domain
    evaluation): a config file (its ``[data]`` and ``[evaluate]``), a datamodule name or
    ``{name, args}``; each result goes to ``<run>/eval/<dataset>/`` and ``metrics.json``'s
    ``datasets``.
    """

    after_training: bool = True
    methods: list[str] = Field(default_factory=lambda: _methods().default_methods())
    reid_metric: RankingMetric = "euclidean"
    protocol: Protocol = "trainval_test"
    max_rank: int = Field(default=DEFAULT_MAX_RANK, ge=1, le=MAX_RANK)
    rerank: bool = False
    rerank_k1: int = Field(default=RERANK_K1, ge=1, le=MAX_RERANK_K)
    rerank_k2: int = Field(default=RERANK_K2, ge=1, le=MAX_RERANK_K)
    rerank_lambda: float = Field(default=RERANK_LAMBDA, ge=0.0, le=1.0)
    bootstrap: int = Field(default=BOOTSTRAP_RESAMPLES, ge=0)
    target_fmr: float = Field(default=DEFAULT_TARGET_FMR, gt=0.0, lt=1.0)
    umap: bool = True
    umap_max_samples: int = Field(default=10_000, ge=10, le=MAX_COUNT)
    datasets: list[str | Named] = Field(default_factory=list)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        return _methods().check_methods(value)


class ExplainConfig(_Section):
    """``[explain]``: attribution defaults for the explain pipeline."""

    algorithm: str = "integrated_gradients"
    samples: int = Field(default=16, ge=1, le=MAX_EXPLAIN_SAMPLES)
    layer: str | None = None


class AlignConfig(_Section):
    """``[align]``: AlignedUMAP defaults."""

    split: Literal["trainval", "test"] = "test"
    max_samples: int = Field(default=5_000, ge=10, le=MAX_COUNT)


class Config(_Section):
    """A whole plp recipe."""

    name: str = "run"
    seed: int = Field(default=0, ge=0, lt=2**32)
    _source: str = PrivateAttr(default="the Config object")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=lambda: LossConfig(**DEFAULT_MODEL["loss"]))
    optimizer: Named = Field(default_factory=lambda: Named(**DEFAULT_MODEL["optimizer"]))
    scheduler: Named = Field(default_factory=lambda: Named(**DEFAULT_MODEL["scheduler"]))
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    distill: DistillConfig | None = None
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)

    @model_validator(mode="before")
    @classmethod
    def _seed_at_the_top(cls, raw: Any) -> Any:
        """Take ``[trainer] seed`` (where configs before the top-level seed kept it) as ``seed``."""
        if isinstance(raw, dict) and isinstance(raw.get("trainer"), dict):
            trainer = raw["trainer"]
            if "seed" in trainer:
                raw = {**raw, "trainer": {k: v for k, v in trainer.items() if k != "seed"}}
                if raw.setdefault("seed", trainer["seed"]) != trainer["seed"]:
                    raise ValueError("seed and trainer.seed differ: keep the top-level seed only")
        return raw

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        check_name(value)  # it names the run's folder: letters, digits and . _ + - only
        if value == LATEST:
            raise ValueError(f"{LATEST!r} is reserved: runs/{LATEST} records the newest run")
        return value

    def __eq__(self, other: object) -> bool:
        # Equal recipes are equal wherever they were read from (``source`` is not compared).
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    @property
    def source(self) -> str:
        """The file this config was read from (for messages), or ``'the Config object'``."""
        return self._source


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Return the validated config read from ``path`` with ``key.path=value`` overrides applied.

    Raises:
        ConfigError: One line naming the file, the key, the given value and what is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: TOML syntax error: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file ({error.reason})") from None
    raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides, source=str(path))
    return validate_config(raw, source=str(path))


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    """Return ``raw`` validated as a :class:`Config`; errors name ``source`` and the key path."""
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None
    config._source = source
    return config


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...], source: str = "--set"
) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` applied (value parsed as TOML).

    The key must exist in the schema (a section of the config or a known field); values that are
    not valid TOML are taken as strings, so ``--set data.args.root=/tmp/x`` works unquoted. In a
    section with an ``args`` table, a key that is not one of the section's fields is an argument:
    ``--set data.root=/tmp/x`` means ``data.args.root``, ``--set optimizer.lr=0.01`` means
    ``optimizer.args.lr`` (the component's constructor then checks the name).
    """
    result = _deep_copy(raw)
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. trainer.epochs=3")
        key = "seed" if key == "trainer.seed" else _resolve_key(key, source)
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def override_config(
    config: Config, overrides: Sequence[str], sections: tuple[str, ...], command: str
) -> Config:
    """Return ``config`` with ``--set`` overrides of the keys a finished run may still change.

    A run's data and model are what its checkpoints were trained on; ``command`` takes keys of
    ``sections`` only (``evaluate.*`` for ``evaluate``), anything else is one line.

    Raises:
        ConfigError: A key outside ``sections``, an unknown key or an invalid value.
    """
    if not overrides:
        return config
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key.split(".")[0] not in sections:
            allowed = ", ".join(f"{section}.*" for section in sections)
            raise ConfigError(
                f"--set {key}: cannot change after training (the run's checkpoints were trained "
                f"with its data and model); {command} overrides take {allowed} keys"
            )
    raw = config.model_dump(mode="json", exclude_none=True)
    changed = validate_config(apply_overrides(raw, list(overrides)), source="--set")
    changed._source = config.source
    return changed


def _resolve_key(key: str, source: str) -> str:
    """Return ``key`` (``args`` inserted where implied) or raise ConfigError if it is unknown."""
    model: type[BaseModel] | None = Config
    walked: list[str] = []
    parts = key.split(".")
    for index, part in enumerate(parts):
        if model is None:  # inside a free-form table such as ``args``
            return ".".join([*walked, *parts[index:]])
        fields = model.model_fields
        if part not in fields and "args" in fields and walked:
            return ".".join([*walked, "args", *parts[index:]])
        if part not in fields:
            prefix = ".".join(walked) or "top level"
            raise ConfigError(
                f"--set {key}: no key {part!r} in {prefix}{did_you_mean(part, fields)}; "
                f"allowed: {', '.join(fields)}"
            )
        walked.append(part)
        annotation = fields[part].annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return key


def _describe(error: ValidationError, source: str) -> str:
    """Return the first validation problem as one line: file, key path, given value, allowed."""
    problem = error.errors()[0]
    location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
    given = problem.get("input")
    if problem["type"] == "extra_forbidden":
        parent = _model_at(problem["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see the docs"
        return f"{source}: unknown key {location!r}; allowed here: {allowed}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    if problem["type"] == "literal_error":
        message = message.replace("Input should be", "expected")
    return f"{source}: {location}: {message} (given: {given!r})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args, *(a for arg in args for a in getattr(arg, "__args__", ()))]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


def config_to_toml(config: Config) -> str:
    """Return ``config`` as TOML text that :func:`load_config` reads back to an equal config.

    Strings are TOML basic strings with every control character escaped (a newline in a path
    stays a value, never a broken line), and keys that are not bare TOML keys are quoted.
    """
    data = config.model_dump(mode="json", exclude_none=True)
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for section, table in data.items():
        if isinstance(table, dict):
            lines.append("")
            lines.append(f"[{_toml_key(section)}]")
            for key, value in table.items():
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """Return ``text`` as a TOML basic string: JSON's escapes are TOML's, plus DEL escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
