"""configs/recipe_tables.py: every table carries the same number per recipe, and writing some recipes' rows
leaves every other row (another branch's recipes, say) as it was."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("recipe_tables", REPO / "configs" / "recipe_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _result(name: str, loss: float) -> dict:
    return {"recipe": name, "test_loss": loss, "test_recon": loss - 1, "test_kl": 1.0, "epochs": 3, "split": "8 / 1 / 1",
            "train_seconds": 5.0, "threads": 1, "active_units": 2, "latent_dims": 4, "kl_per_dim": [0.5, 0.25, 0.001, 0.0],
            "conditional_sample_accuracy": 0.9, "classifier_test_accuracy": 0.85}


def test_every_recipe_is_listed_and_both_files_have_markers():
    mod = _module()
    assert set(mod.recipe_names()) == {p.stem for p in (REPO / "configs").glob("seed*.yaml")}
    assert all(mod.describe(n) for n in mod.recipe_names())
    for path, markers in ((REPO / "README.md", ["recipe-table"]), (REPO / "configs" / "README.md", ["recipe-table", "recipe-units"])):
        text = path.read_text()
        for m in markers:
            assert text.count(f"<!-- {m}:begin -->") == 1 and text.count(f"<!-- {m}:end -->") == 1


def test_tables_agree_and_only_the_measured_rows_change(tmp_path):
    mod = _module()
    (tmp_path / "configs").mkdir()
    other = "| seed001-sd-other | `cmd` | kept as another branch wrote it | 1.0 |"
    for path, markers in ((tmp_path / "README.md", ["recipe-table"]),
                          (tmp_path / "configs" / "README.md", ["recipe-table", "recipe-units"])):
        blocks = [f"<!-- {m}:begin -->\n| old | header |\n|---|---|\n| seed002-vae-mnist | stale |\n{other}\n<!-- {m}:end -->"
                  for m in markers]
        path.write_text("before\n" + "\nmiddle\n".join(blocks) + "\nafter\n")
    results = [_result("seed002-vae-mnist", 100.123456), _result("seed002-cvae-mnist", 99.5), _result(mod.DEFAULT, 3.0)]
    mod.write_all(results, tmp_path)
    for path in (tmp_path / "README.md", tmp_path / "configs" / "README.md"):
        text = path.read_text()
        assert text.startswith("before\n") and text.endswith("after\n") and "stale" not in text
        assert text.count(other) == text.count(":begin -->")  # the unmeasured row survives in every table
    readme, configs = (tmp_path / "README.md").read_text(), (tmp_path / "configs" / "README.md").read_text()
    for r in results[:2]:
        assert f"| {r['test_loss']:.4f} |" in readme and f"**{r['test_loss']:.4f}**" in configs
    units = configs.split("<!-- recipe-units:begin -->")[1]
    assert "| bundled default (`vaelab train`) | 2 of 4 | 0.751 (0) |" in units
    assert "samples at temperature 1 show their label 90.0% (classifier's own test accuracy 85.0%)" in readme
    rows = [ln for ln in readme.splitlines() if ln.startswith("| seed")]
    assert [mod.table_key(r) for r in rows] == ["seed002-vae-mnist", "seed002-cvae-mnist", "seed001-sd-other"]
    assert mod.DEFAULT not in readme  # the bundled default is only in the active-units table
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        mod.write_table(tmp_path / "bare.md", "recipe-table", "| a |", {})
