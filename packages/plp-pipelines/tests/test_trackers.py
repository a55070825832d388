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


def test_a_validation_split_no_image_can_match_in_skips_retrieval_or_refuses_its_monitor():
    import numpy as np
    import torch

    import plp_models
    from plp_data import ValidationSplit, choose_queries
    from plp_pipelines._selection import retrieval_validation

    class Model(plp_models.PlpModel):
        def __init__(self) -> None:  # retrieval_validation only asks what the model is
            torch.nn.Module.__init__(self)

    def split(labels: list[int], cameras: list[int] | None = None) -> ValidationSplit:
        ids, cams = np.array(labels), None if cameras is None else np.array(cameras)
        queries = choose_queries(ids, cams, 0)
        return ValidationSplit(np.arange(len(ids)), ids, cams, queries, class_disjoint=True)

    config, model = load_config(CONFIG), Model()
    with pytest.warns(UserWarning, match=r"skipped: no class of the 3 validation images has a "):
        assert retrieval_validation(config, model, split([0, 1, 2])) is None
    assert retrieval_validation(config, model, split([0, 1, 1])).names == ["val/mAP", "val/rank1"]
    query_gallery = load_config(CONFIG, ["evaluate.protocol=query_gallery"])
    with pytest.warns(UserWarning, match=r"no identity of the 2 .* \(from another camera\)"):
        assert retrieval_validation(query_gallery, model, split([0, 0], cameras=[1, 1])) is None
    for setting, key in (
        ("checkpoint.monitor=val/mAP", "checkpoint.monitor"),
        ("trainer.early_stopping={monitor='val/rank1'}", "trainer.early_stopping.monitor"),
    ):
        with pytest.raises(ConfigError) as error:
            retrieval_validation(load_config(CONFIG, [setting]), model, split([0, 1]))
        assert str(error.value).startswith(f"configs/digits.toml: {key}: 'val/")
        assert "can never be computed: no class of the 2 validation images" in str(error.value)
