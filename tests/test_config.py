import pytest

from vaelab.core.config import Config, apply_override, load_config
from vaelab.core.errors import ConfigError


def test_defaults_validate():
    cfg = load_config({})
    assert cfg.model.preset == "examples-mlp" and cfg.data.name == "digits"


def test_no_source_is_the_clis_default_config():
    from vaelab.core.config import default_config_path

    cfg = load_config(None)
    assert cfg == load_config(default_config_path()) and cfg.name == "digits-mlp"


def test_unknown_key_names_dotted_path_and_close_match():
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key; did you mean 'train\.epochs'"):
        load_config({"train": {"epoch": 3}})


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match=r"modle: unknown key; did you mean 'model'"):
        load_config({"modle": {}})


def test_overrides_parse_yaml_scalars():
    cfg = load_config({}, ["train.lr=3e-4", "train.progress=False", "train.epochs=7", "loss.kl_schedule.kind=cyclical",
                             "loss.kl_schedule.n_cycles=2"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.progress is False  # seed 001 parsed "False" as True
    assert cfg.train.epochs == 7
    assert cfg.loss.kl_schedule.params() == {"n_cycles": 2}


def test_override_into_list():
    raw = {"model": {"encoder": ["Flatten", "Linear_64_8"]}}
    apply_override(raw, "model.encoder.1=Linear_64_16")
    assert raw["model"]["encoder"][1] == "Linear_64_16"
    with pytest.raises(ConfigError, match="out of range"):
        apply_override(raw, "model.encoder.5=ReLU")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(None, ["train.lr"])


def test_bad_layer_string_fails_at_load_with_field_and_token():
    bad = {"model": {"encoder": ["Flatten", "C2d_3_128_3_1"], "decoder": ["Linear_2_64"]}}
    with pytest.raises(ConfigError, match=r"model\.encoder\[1\] 'C2d_3_128_3_1': C2d takes \(in, out, kernel, stride, padding\), got 4 values"):
        load_config(bad)


def test_unknown_layer_suggests():
    with pytest.raises(ConfigError, match=r"model\.decoder\[0\].*Did you mean 'Linear'"):
        load_config({"model": {"encoder": ["Flatten"], "decoder": ["Linaer_2_4"]}})


def test_float_where_int_needed():
    with pytest.raises(ConfigError, match="must be an integer, got a float"):
        load_config({"model": {"encoder": ["Linear_64_2.5"], "decoder": ["Linear_2_64"]}})


def test_unknown_optimizer_and_schedule_param():
    with pytest.raises(ConfigError, match=r"train\.optimizer\.name: unknown optimizer 'adamm'"):
        load_config(None, ["train.optimizer.name=adamm"])
    with pytest.raises(ConfigError, match=r"loss\.kl_schedule"):
        load_config(None, ["loss.kl_schedule.kind=cyclical", "loss.kl_schedule.n_cycle=3"])


def test_preset_and_lists_are_exclusive():
    with pytest.raises(ConfigError, match="either model.preset or model.encoder"):
        load_config({"model": {"preset": "mlp", "encoder": ["Flatten"]}})


def test_yaml_round_trip(tmp_path):
    cfg = load_config({}, ["train.epochs=3", "loss.kl_schedule.kind=cyclical"])
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(p) == cfg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    assert isinstance(Config(), Config)


def test_seed001_mstruct_files(tmp_path):
    import json

    (tmp_path / "VAE_encoder.mstruct").write_text(json.dumps(["Flatten", "Linear_64_16", "ReLU", "Linear_16_8"]))
    (tmp_path / "VAE_decoder.mstruct").write_text(json.dumps(["Linear_4_64", "Unflatten_1_8_8"]))
    cfg = load_config({"model": {"encoder": str(tmp_path / "VAE_encoder.mstruct"), "decoder": str(tmp_path / "VAE_decoder.mstruct")}})
    assert cfg.model.encoder[1] == "Linear_64_16"
    (tmp_path / "bad.mstruct").write_text("{not json")
    with pytest.raises(ConfigError, match=r"model\.encoder: .*bad\.mstruct: not a JSON list"):
        load_config({"model": {"encoder": str(tmp_path / "bad.mstruct"), "decoder": ["Linear_4_64"]}})
    with pytest.raises(ConfigError, match="neither a list of layer strings nor an existing"):
        load_config({"model": {"encoder": "nope.mstruct", "decoder": ["Linear_4_64"]}})


def test_api_exports_every_command_function():
    import vaelab.api as api

    for name in api.__all__:
        assert callable(getattr(api, name)) or isinstance(getattr(api, name), type), name
