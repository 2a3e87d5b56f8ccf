"""configs/recipe_tables.py: both tables carry the same number per recipe and replace only the marked block."""
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


def test_every_recipe_is_listed_and_both_files_have_markers():
    mod = _module()
    assert set(mod.RECIPES) == {p.stem for p in (REPO / "configs").glob("seed*.yaml")}
    for path in (REPO / "README.md", REPO / "configs" / "README.md"):
        text = path.read_text()
        assert text.count(mod.BEGIN) == 1 and text.count(mod.END) == 1


def test_tables_agree_and_replace_only_the_block(tmp_path):
    mod = _module()
    results = [{"recipe": n, "test_loss": 100.0 + i + 0.123456, "epochs": 3, "split": "8 / 1 / 1", "train_seconds": 5.0,
                "threads": 1} for i, n in enumerate(mod.RECIPES)]
    a, b = mod.readme_table(results), mod.configs_table(results)
    for r in results:
        assert f"{r['test_loss']:.4f}" in a and f"{r['test_loss']:.4f}" in b
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{mod.BEGIN}\nold | table\n{mod.END}\nafter\n")
    mod.replace_table(doc, a)
    assert doc.read_text() == f"before\n{mod.BEGIN}\n{a}\n{mod.END}\nafter\n"
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        mod.replace_table(tmp_path / "bare.md", a)
