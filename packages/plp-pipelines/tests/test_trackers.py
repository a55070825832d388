"""Logger and selection settings checked before a run: missing extras, names, monitors."""

from __future__ import annotations

import pytest

from plp_pipelines import ConfigError, _trackers, load_config
from plp_pipelines._selection import monitor_mode, plan_selection
from plp_pipelines._trackers import check_loggers, final_metrics, flat_params, mlflow_name

CONFIG = "configs/digits.toml"


@pytest.mark.parametrize(("logger", "extra"), [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_logger_without_its_package_is_one_line_naming_the_extra(monkeypatch, logger, extra):
    monkeypatch.setattr(_trackers, "_installed", lambda module: False)
    config = load_config(CONFIG, [f'logging.loggers=["csv", "{logger}"]'])
    with pytest.raises(ConfigError) as error:
        check_loggers(config)
    assert str(error.value) == (
        f"configs/digits.toml: logging.loggers: {logger!r} needs the {extra} package, which is "
        f"not installed: pip install 'plp-pipelines[{extra}]'"
    )


def test_flat_params_and_names_trackers_accept():
    params = flat_params(load_config(CONFIG, ["trainer.ema=0.99"]))
    assert params["trainer.ema"] == 0.99 and params["optimizer.args.lr"] == 0.003
    assert params["trainer.gradient_clip_val"] == "null"
    assert mlflow_name("val/MAP@R") == "val/MAP_at_R" and mlflow_name("val/mAP") == "val/mAP"
    metrics = {"reid": {"mAP": 0.5, "cmc": [1.0], "metric": "cosine"}, "checkpoint": "x"}
    assert final_metrics(metrics) == {"test/reid/mAP": 0.5}


def test_monitor_mode_and_default_monitor():
    assert monitor_mode("val_loss") == "min" and monitor_mode("val/MAP@R") == "max"
    config = load_config(CONFIG)
    assert plan_selection(config, ["train_loss", "val_loss"], validates=True).monitor == "val_loss"
    assert plan_selection(config, ["train_loss"], validates=False).monitor is None
    stopping = load_config(CONFIG, ["trainer.early_stopping={patience=2}"])
    with pytest.raises(ConfigError, match=r"trainer\.early_stopping: the run does not validate"):
        plan_selection(stopping, ["train_loss"], validates=False)
    unknown = load_config(CONFIG, ["checkpoint.monitor=val/mAP"])
    with pytest.raises(ConfigError, match=r"it logs: train_loss \(it does not validate"):
        plan_selection(unknown, ["train_loss"], validates=False)
