"""The CLI as a new user runs it, in subprocesses."""
import json
import os
import signal
import subprocess
import sys
import time

import yaml

from conftest import tiny_config

VAELAB = [sys.executable, "-m", "vaelab"]


def run(*args, cwd=None, check=True):
    p = subprocess.run([*VAELAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def write(tmp_path, cfg, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_help_explains_every_command():
    out = run("--help").stdout
    for cmd in ("train", "check", "layers", "presets"):
        assert cmd in out
        assert "Usage" in run(cmd, "--help").stdout


def test_layers_lists_vocabulary():
    out = run("layers").stdout
    for name in ("C2d", "VAERB", "VAEA", "GN", "SiLU", "MaxP", "UpS", "Linear", "TEL", "CT2d", "C3d"):
        assert name in out


def test_train_prints_run_folder_and_resume_extends(tmp_path):
    cfg = write(tmp_path, tiny_config())
    p = run("train", cfg, "--out", tmp_path / "run", "--set", "train.epochs=1", "--set", "train.progress=true")
    assert p.stdout.strip() == str(tmp_path / "run")
    assert "epoch 1/1" in p.stderr
    p = run("train", "--resume", tmp_path / "run", "--set", "train.epochs=2", "--set", "train.progress=false")
    assert "epoch 2/2" not in p.stderr  # quiet means no epoch lines either
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_check_prints_shapes_without_training(tmp_path):
    cfg = write(tmp_path, {"model": {"preset": "seed001-sd", "preset_args": {"base": 32}, "input_shape": [3, 64, 64]}})
    out = run("check", cfg, "--no-data").stdout
    assert "VAEA_64" in out and "(4, 2, 2)" in out and "(3, 64, 64)" in out and "total parameters" in out
    assert not any(tmp_path.glob("runs"))


def test_check_catches_mismatch_before_training(tmp_path):
    cfg = tiny_config(model={"encoder": ["Flatten", "Linear_64_32", "ReLU", "Linear_31_8"], "decoder": ["Linear_4_64", "Unflatten_1_8_8"]})
    p = run("check", write(tmp_path, cfg), check=False)
    assert p.returncode == 2
    assert "model.encoder[3] 'Linear_31_8': expects 31 input features, but the previous layer gives 32" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_inputs_give_one_clear_line(tmp_path):
    cases = [
        ({"train": {"epoch": 1}}, "train.epoch: unknown key; did you mean 'train.epochs'"),
        (tiny_config(model={"encoder": ["Flattn"], "decoder": ["Linear_4_64"]}), "Did you mean 'Flatten'"),
        (tiny_config(data={"name": "mnist", "path": str(tmp_path / "nowhere")}), "nowhere"),
    ]
    for cfg, msg in cases:
        p = run("train", write(tmp_path, cfg), "--out", tmp_path / "r", check=False)
        assert p.returncode == 2, p.stderr
        assert msg in p.stderr and "Traceback" not in p.stderr
        assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_corrupt_idx_file_is_named(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x99" + b"\x00" * 20)
    (d / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    p = run("train", write(tmp_path, tiny_config(data={"name": "mnist", "path": str(d)})), "--out", tmp_path / "r", check=False)
    assert p.returncode == 2 and "t10k-images-idx3-ubyte" in p.stderr and "magic" in p.stderr.lower()


def test_sigterm_leaves_a_resumable_run(tmp_path):
    cfg = tiny_config(train={"epochs": 400, "batch_size": 8, "progress": False, "figures": False}, data={"name": "digits"})
    proc = subprocess.Popen([*VAELAB, "train", str(write(tmp_path, cfg)), "--out", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL if os.name != "nt" else signal.SIGTERM)
    proc.wait(timeout=30)
    p = run("train", "--resume", tmp_path / "r", "--set", "train.epochs=1", check=False)
    # the run already has >= 1 epoch: resuming to 1 epoch finishes at once and keeps its history
    assert p.returncode == 0, p.stderr
    rows = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) >= 1


def test_a_run_with_a_relative_data_path_resumes_and_evaluates_from_another_directory(tmp_path, mnist_dir):
    """The run stores where its data lies from the run folder; a relative data.path that does not exist from the
    working directory is found from there (train --resume and the use commands)."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "mnist").symlink_to(mnist_dir)
    cfg = tiny_config(data={"name": "mnist", "path": "data/mnist", "limit": 200},
                      model={"input_shape": [1, 28, 28], "encoder": ["Flatten", "Linear_784_16", "ReLU"],
                             "heads": {"mu": ["Linear_16_2"], "logvar": ["Linear_16_2"]},
                             "decoder": ["Linear_2_784", "Unflatten_1_28_28"]},
                      train={"epochs": 1, "batch_size": 32, "progress": False, "figures": False})
    write(work, cfg)
    run("train", "c.yaml", "--out", tmp_path / "run", cwd=work)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run("train", "--resume", tmp_path / "run", "--set", "train.epochs=2", cwd=elsewhere)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2
    run("train", "--resume", tmp_path / "run", "--set", "train.epochs=3", cwd=tmp_path)  # the stored location still holds
    p = run("evaluate", tmp_path / "run", "--k", "2", "--bits", "", cwd=elsewhere)
    assert "items of mnist" in p.stdout
