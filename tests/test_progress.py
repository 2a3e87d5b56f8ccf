"""Long work shows progress (vaelab.core.progress), epoch lines add up, use commands bound their per-item files."""
import io
import re
import subprocess
import sys

import pytest
import yaml

from conftest import tiny_config
from vaelab.core import progress
from vaelab.core.progress import advance, stage, track

VAELAB = [sys.executable, "-m", "vaelab"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_line_per_stage_off_a_terminal():
    out = io.StringIO()
    with stage("outer", 3, unit="trials", stream=out):
        for _ in range(3):
            with stage("epoch", 5, unit="batches", summary=False, stream=out):  # the caller prints its own line
                advance(5)
            advance()
    with stage("cached", 10, stream=out):
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"outer: 3 trials in \d+\.\d s \([\d,.]+ trials/s\)", lines[0])
    assert lines[1].startswith("cached: 10 items in ")


def test_quiet_stage_silences_every_stage_inside_it():
    out = io.StringIO()
    with stage("search", 2, enabled=False, stream=out):
        with stage("inner", 2, stream=out):
            advance(2)
        for _ in track(range(3), "tracked"):
            pass
    assert out.getvalue() == ""


def test_advance_without_a_stage_does_nothing_and_the_open_stage_is_restored():
    advance(5)  # no stage open: nothing to move, no error
    with pytest.raises(ValueError):
        with stage("fails", 3, stream=io.StringIO()):
            raise ValueError("boom")
    assert progress._OPEN.get() is None


def test_terminal_gets_a_rich_bar_with_rate_and_eta():
    out = Terminal()
    with stage("work", 4, stream=out):
        for _ in range(4):
            advance()
    text = out.getvalue()
    assert "work" in text and "4/4" in text and "items/s" in text and "ETA" in text


def _cli(*args, cwd=None):
    p = subprocess.run([*VAELAB, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p


def test_epoch_lines_show_weighted_terms_that_add_up(tmp_path):
    cfg = tiny_config(loss={"kl_weight": 0.5, "ssim": True, "ssim_weight": 3.0,
                            "kl_schedule": {"kind": "linear", "start": 0.0, "stop": 1.0, "warmup_fraction": 1.0}},
                      train={"epochs": 2, "batch_size": 32, "progress": True, "figures": False})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    err = _cli("train", tmp_path / "c.yaml", "--out", tmp_path / "run").stderr
    lines = [l for l in err.splitlines() if l.startswith("epoch ")]
    assert len(lines) == 2
    for line in lines:
        m = re.search(r"loss ([\d.]+) = (.*?)  val", line)
        assert m, line
        total, parts = float(m.group(1)), m.group(2).split(" + ")
        assert [p.split()[0].split("*")[-1] for p in parts] == ["recon", "kl", "(1-ssim)"], line
        added = 0.0
        for p in parts:
            coef_name, value = p.rsplit(" ", 1)
            coef = float(coef_name.split("*")[0]) if "*" in coef_name else 1.0
            added += coef * float(value)
        assert added == pytest.approx(total, abs=2e-3), line
    assert "3*(1-ssim)" in lines[0]  # a fixed weight shows as is; the KL's is 0.5 x the schedule's epoch mean


def test_use_commands_write_a_bounded_number_of_files_unless_all(tmp_path):
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "progress": False, "figures": False})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    _cli("train", tmp_path / "c.yaml", "--out", run)
    p = _cli("reconstruct", run, "--data", "digits", "--limit", 80, "--out", tmp_path / "rec")
    assert len(list((tmp_path / "rec").glob("*.png"))) == 64 + 1  # per-item PNGs + the grid
    assert "first 64 of 80 items (--all for every one)" in p.stdout
    assert "reconstruct: 80 items in" in p.stderr  # one line per stage when not on a terminal
    _cli("reconstruct", run, "--data", "digits", "--limit", 80, "--out", tmp_path / "all", "--all")
    assert len(list((tmp_path / "all").glob("*.png"))) == 80 + 1
    _cli("encode", run, "--data", "digits", "--out", tmp_path / "z.npz")
    import numpy as np

    with np.load(tmp_path / "z.npz") as d:  # an unconditional run keeps the data's labels
        assert d["labels"].shape == d["z"].shape[:1] and d["labels"].size > 0
    _cli("decode", run, tmp_path / "z.npz", "--out", tmp_path / "dec")
    assert len(list((tmp_path / "dec").glob("*.png"))) == 64 + 1  # + decoded.png
