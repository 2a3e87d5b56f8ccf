"""Search space: gene validation, templates that become ordinary configs, fingerprints."""
import copy

import pytest

from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError, ModelError
from vaelab.search.space import encode_genes, load_space

SPACE = {
    "name": "t",
    "genes": {"latent_dim": {"type": "int", "low": 3, "high": 10}, "mid_layer": {"type": "int", "low": 10, "high": 50},
              "act": {"type": "choice", "choices": ["ReLU", "SiLU"]}, "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    "template": {"family": "mlp", "hidden": ["$mid_layer", 32], "depth": 1, "latent": "$latent_dim", "activation": "$act",
                 "set": {"train.lr": "$lr"}},
    "objectives": [{"name": "neg_elbo"}, {"name": "ood"}],
}


def space(**changes):
    raw = copy.deepcopy(SPACE)
    for k, v in changes.items():
        raw[k] = v
    return load_space(raw)


@pytest.mark.parametrize("gene,needle", [
    ({"type": "int", "low": 10, "high": 3}, "inverted range"),
    ({"type": "int", "low": 5, "high": 5}, "empty range"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log: true needs low > 0"),
    ({"type": "choice", "choices": []}, "choices"),
])
def test_bad_genes_name_the_field(gene, needle):
    with pytest.raises(ConfigError) as e:
        space(genes={"g": gene})
    assert needle in str(e.value) and "genes.g" in str(e.value)


def test_unknown_gene_reference_and_objective():
    with pytest.raises(ConfigError, match=r"template.latent refers to unknown gene '\$nope'"):
        space(template={"latent": "$nope"})
    with pytest.raises(ConfigError, match="unknown objective 'ood_score'.*'ood'"):
        space(objectives=[{"name": "neg_elbo"}, {"name": "ood_score"}])
    with pytest.raises(ConfigError, match="objectives"):
        space(objectives=[{"name": "neg_elbo"}])


def test_mlp_template_is_an_ordinary_config_with_input_size_from_the_data():
    s = space()
    raw = s.trial_config({"latent_dim": 4, "mid_layer": 17, "act": "SiLU", "lr": 0.005}, (1, 8, 8))
    cfg = load_config(raw)
    assert cfg.model.encoder == ["Flatten", "Linear_64_17", "SiLU"]  # depth 1 keeps the first width
    assert cfg.model.heads.mu == ["Linear_17_4"]
    assert cfg.model.decoder[-2:] == ["Linear_17_64", "Unflatten_1_8_8"]
    assert cfg.train.lr == pytest.approx(0.005)
    model = build_model(cfg.model, DataSpec((1, 8, 8), value_range=(0.0, 1.0)))
    assert tuple(model.latent_shape) == (4,)
    wide = load_config(s.trial_config({"latent_dim": 4, "mid_layer": 17, "act": "ReLU", "lr": 0.005}, (88,)))
    assert wide.model.encoder[0] == "Linear_88_17"  # seed 000's 88-wide quaternion rows: no Flatten, width from data


def test_conv_template_builds_and_too_deep_fails_at_build():
    s = space(genes={"d": {"type": "int", "low": 1, "high": 4}},
              template={"family": "conv", "channels": [8, 16, 16, 16], "depth": "$d", "latent": 5})
    ok = load_config(s.trial_config({"d": 2}, (1, 8, 8)))
    model = build_model(ok.model, DataSpec((1, 8, 8), value_range=(0.0, 1.0)))
    assert tuple(model.input_shape) == (1, 8, 8) and tuple(model.latent_shape) == (5,)
    with pytest.raises((ConfigError, ModelError)):  # 8 -> 4 -> 2 -> 1 -> 0: the shape check refuses it
        bad = load_config(s.trial_config({"d": 4}, (1, 8, 8)))
        build_model(bad.model, DataSpec((1, 8, 8), value_range=(0.0, 1.0)))
    with pytest.raises(ConfigError, match="conv needs image data"):
        s.trial_config({"d": 1}, (64,))


def test_fingerprint_tracks_the_space_not_the_budget():
    a = space()
    b = space(search={"trials": 99, "population": 4})
    c = space(genes={**SPACE["genes"], "latent_dim": {"type": "int", "low": 3, "high": 12}})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_gene_features_one_hot_and_log():
    s = space()
    row = encode_genes(s, {"latent_dim": 4, "mid_layer": 20, "act": "SiLU", "lr": 1e-3})
    assert row[:4] == [4.0, 20.0, 0.0, 1.0] and row[4] == pytest.approx(-6.9078, abs=1e-3)
    assert s.labels() == ["loss", "OOD"] and s.directions() == ["minimize", "minimize"]


def test_unknown_surrogate_screen_names_the_field_and_the_choices():
    with pytest.raises(ConfigError, match=r"surrogate.screen.*'hvi'"):
        space(search={"surrogate": {"screen": "hv"}})
