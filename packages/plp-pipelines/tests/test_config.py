import tomllib
from pathlib import Path

import pytest

import plp_pipelines
from plp_pipelines import Config, ConfigError, load_config
from plp_pipelines._config import apply_overrides, config_to_toml, validate_config

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    assert config.name == tomllib.loads(path.read_text()).get("name", path.stem)


def test_resolved_config_round_trips_through_toml(tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "digits.toml", ["trainer.epochs=3", "data.args.x=1"])
    written = tmp_path / "config.toml"
    written.write_text(config_to_toml(config))
    assert load_config(written) == config
    assert config.trainer.epochs == 3 and config.data.args["x"] == 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[data]\nnmae = 'digits'\n",
            r"bad\.toml: unknown key 'data\.nmae'; allowed here: name, args",
        ),
        ("[trainer]\nepochs = 'ten'\n", r"bad\.toml: trainer\.epochs: .*integer.*\(given: 'ten'\)"),
        ("[trainer]\nepochs = 0\n", r"trainer\.epochs: .*greater than or equal to 1"),
        (
            "[evaluate]\nmethods = ['reid', 'map']\n",
            r"evaluate\.methods: unknown method 'map'; available: accuracy",
        ),
        ("bogus = 1\n", r"unknown key 'bogus'; allowed here: name, seed, data, model"),
        ("[loss]\nname = 'a'\nterms = [{name = 'b'}]\n", r"loss: .*either name .* or terms"),
        ("[loss]\nterms = [{name = 'b', wieght = 2}]\n", r"unknown key 'loss\.terms\.0\.wieght'"),
        ("name = 'a/b'\n", r"name: must be a name of letters.*'/' is not allowed"),
        ("[data\nname = 1\n", r"bad\.toml: TOML syntax error: .*line 1"),
        ("[loss]\nname = 'contrastive'\nmemory = {}\n", r"loss\.memory\.size: Field required"),
        (
            "[loss]\nterms = [{name = 'contrastive'}]\nminer = {name = 'batch_hard'}\n",
            r"loss: .*with terms, give the miner and memory in the term they feed",
        ),
        ("[distill]\nteacher = 'runs/x'\nloss = 'kl'\n", r"distill\.loss: .*'embedding_mse'"),
    ],
)
def test_bad_configs_give_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_parse_toml_values_and_reject_unknown_keys() -> None:
    raw = apply_overrides({}, ["trainer.epochs=3", "data.args.root=/tmp/x", "evaluate.umap=false"])
    assert raw == {
        "trainer": {"epochs": 3},
        "data": {"args": {"root": "/tmp/x"}},
        "evaluate": {"umap": False},
    }
    with pytest.raises(ConfigError, match=r"no key 'epoch' in trainer \(did you mean 'epochs'\?\)"):
        apply_overrides({}, ["trainer.epoch=3"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["trainer.epochs"])
    with pytest.raises(ConfigError, match="'seed' is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=3"])


def test_the_seed_sits_at_the_top_and_trainer_seed_still_reads() -> None:
    assert validate_config({"seed": 7}).seed == 7
    assert validate_config({"trainer": {"seed": 7, "epochs": 2}}).seed == 7  # older run configs
    assert apply_overrides({}, ["trainer.seed=3"]) == {"seed": 3}
    with pytest.raises(ConfigError, match=r"seed and trainer\.seed differ"):
        validate_config({"seed": 1, "trainer": {"seed": 2}})
    assert "seed = 0" in config_to_toml(validate_config({})).splitlines()[:2]


def test_loss_forms() -> None:
    single = validate_config({"loss": {"name": "triplet_margin", "args": {"margin": 0.3}}})
    assert [(t.name, t.weight, t.args) for t in single.loss.as_terms()] == [
        ("triplet_margin", 1.0, {"margin": 0.3})
    ]
    weighted = validate_config(
        {"loss": {"terms": [{"name": "cross_entropy"}, {"name": "triplet_margin", "weight": 0.5}]}}
    )
    assert [t.weight for t in weighted.loss.as_terms()] == [1.0, 0.5]
    assert Config().loss.as_terms()[0].name == "cross_entropy"


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(plp_pipelines) if not name.startswith("_")}
    assert public == set(plp_pipelines.__all__)
    for name in plp_pipelines.__all__:
        assert getattr(plp_pipelines, name) is not None
