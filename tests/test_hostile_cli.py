"""Bad input at the command line, table-driven (issue 13, point 5): every case is one `error:` line naming the
field, token or file, exit code 2 for input to fix and 1 for failures at run time, never a traceback, and
nothing written. Runs `vaelab.cli.main` in this process (what the console script calls), so it stays fast."""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from hostile_helpers import assert_one_line_error, vaelab
from vaelab.core.config import load_config
from vaelab.training.trainer import train


def _idx(path: Path, arr: np.ndarray) -> None:
    magic = 0x801 if arr.ndim == 1 else 0x803
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes())


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels (a decompression bomb needs no more to be refused)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def f(tmp_path_factory) -> Path:
    """Hostile files, and a tiny trained run (RUN) for the use commands."""
    d = tmp_path_factory.mktemp("hostile")
    train(load_config(tiny_config()), d / "run")
    np.save(d / "empty.npy", np.zeros((0,), np.float32))
    np.save(d / "zero_d.npy", np.float32(3.0))
    np.save(d / "words.npy", np.array(["a", "b"]))
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04" + b"garbage" * 10)
    with zipfile.ZipFile(d / "badmember.npz", "w") as z:
        z.writestr("poses.npy", b"\x93NUMPY garbage")
    np.savez(d / "amass_zero.npz", poses=np.zeros((0, 156)))
    np.savez(d / "amass_nan.npz", poses=np.full((20, 156), np.nan))
    for name, n, bad in (("mnist_zero", 0, None), ("mnist_badlabel", 64, 200)):
        (d / name).mkdir()
        for split in ("train", "t10k"):
            labels = np.arange(n) % 10
            if bad is not None:
                labels[40] = bad
            _idx(d / name / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28)))
            _idx(d / name / f"{split}-labels-idx1-ubyte", labels)
    (d / "bomb").mkdir()
    _png_header_only(d / "bomb" / "bomb.png", 30000, 30000)
    (d / "cfgdir").mkdir()
    (d / "afile").write_text("x")
    return d


MNIST_MLP = ["--set", "model.preset=examples-mlp", "--set", "model.encoder=null", "--set", "model.decoder=null",
             "--set", "model.heads=null", "--set", "train.epochs=1"]

# (args, exit code, words the one error line must contain); F = the fixture folder, RUN = its trained run
CASES = [
    # --set and config values
    (["check", "--set", "model.heads.mu.0.x=1"], 2, ["model.heads.mu.0 is a value ('Linear_128_8')"]),
    (["check", "--set", "model.encoder.1.foo.bar=1"], 2, ["model.encoder.1 is a value"]),
    (["check", "--set", "model.encoder.9=ReLU"], 2, ["model.encoder.9", "out of range"]),
    (["check", "--set", "train.lr"], 2, ["expected dotted.key=value"]),
    (["check", "--set", "train.device=banana"], 2, ["train.device must be auto, cpu, cuda", "'banana'"]),
    (["check", "--set", "train.lr=-1"], 2, ["train.lr", "greater than 0"]),
    (["check", "--set", "train.lr=inf"], 2, ["train.lr", "finite"]),
    (["check", "--set", "loss.kl_weight=nan"], 2, ["loss.kl_weight", "finite"]),
    (["check", "--set", "train.epochs=0"], 2, ["train.epochs"]),
    (["check", "--set", "train.batch_size=-4"], 2, ["train.batch_size must be >= 1 or auto"]),
    (["check", "--set", "train.scheduler={name: onecycle, kwargs: {max_lr: -1}}"], 2, ["train.scheduler.kwargs.max_lr", "> 0"]),
    (["check", "--set", "train.scheduler={name: steplr, kwargs: {step_size: -1}}"], 2, ["train.scheduler.kwargs.step_size", ">= 1"]),
    (["check", "--set", "train.scheduler={name: multisteplr, kwargs: {milestones: 5}}"], 2,
     ["train.scheduler.kwargs.milestones must be a list of epoch numbers"]),
    (["check", "--set", "train.scheduler.kwargs={T_max: 0}", "--set", "train.scheduler.name=cosine"], 2, ["T_max"]),
    (["check", "--set", "train.optimizer={name: sgd, kwargs: {momentum: -1}}"], 2, ["train.optimizer (sgd)", "momentum"]),
    (["check", "--set", "train.optimizer.kwargs={betas: [2, 3]}"], 2, ["train.optimizer (adamw)", "beta"]),
    (["check", "--set", "train.optimizer.kwargs={nosuch: 1}"], 2, ["train.optimizer.kwargs.nosuch", "Valid"]),
    (["check", "--set", "train.precision=fp16", "--set", "train.device=cpu"], 2, ["train.precision", "fp16"]),
    (["check", "--set", "model.input_shape=[1, 9, 9]"], 2, ["model.input_shape [1, 9, 9] does not match the data's shape"]),
    (["check", "--set", "model.condition={kind: label, num_classes: 5}", "--set", "model.encoder.1=Linear_69_256",
      "--set", "model.decoder.0=Linear_13_128"], 2,
     ["model.condition.num_classes is 5 but the data has 10 classes"]),
    (["check", "--set", "model.encoder=[]"], 2, ["model.encoder: the list is empty"]),
    (["check", "--set", "model.encoder.4=Linear_64_0"], 2, ["'Linear_64_0'", "out_features' must be >= 1"]),
    (["check", "--set", "model.encoder.4={Conv2d: {args: [1, 0, 3]}}"], 2, ["out_channels' must be >= 1"]),
    (["check", "--set", "data.path=/nonexistent"], 2, ["data.path: dataset 'digits' reads no file"]),
    (["check", "F/cfgdir"], 2, ["is a folder; give the YAML file inside it"]),
    (["check", "F/nosuch.yaml"], 2, ["does not exist"]),
    (["check", "F/empty.npy"], 2, ["not valid YAML"]),
    # data files
    (["check", "--set", "data={name: table, path: F/empty.npy}"], 2, ["empty.npy: no rows"]),
    (["check", "--set", "data={name: table, path: F/zero_d.npy}"], 2, ["zero_d.npy: holds a single number"]),
    (["check", "--set", "data={name: table, path: F/words.npy}"], 2, ["words.npy: samples have dtype <U1"]),
    (["check", "--set", "data={name: table, path: F/corrupt.npz}"], 2, ["corrupt.npz: cannot read .npz (BadZipFile"]),
    (["check", "--set", "data={name: amass, path: F/corrupt.npz}"], 2, ["corrupt.npz: cannot read AMASS .npz"]),
    (["check", "--set", "data={name: amass, path: F/badmember.npz}"], 2, ["badmember.npz: cannot read AMASS .npz"]),
    (["check", "--set", "data={name: amass, path: F/amass_zero.npz}"], 2, ["poses has 0 frames"]),
    (["check", "--set", "data={name: amass, path: F/amass_nan.npz}"], 2, ["20 of 20 frames hold NaN or inf"]),
    (["check", "--set", "data={name: image_folder, path: F/bomb, options: {size: 8}}"], 2, ["none of the images could be read"]),
    (["train", "--set", "data={name: mnist, path: F/mnist_zero}", *MNIST_MLP, "--out", "F/out_zero"], 2,
     ["train-images-idx3-ubyte holds 0 images"]),
    (["train", "--set", "data={name: mnist, path: F/mnist_badlabel}", *MNIST_MLP, "--out", "F/out_bad"], 2,
     ["train-labels-idx1-ubyte: label 200 at item 40 is outside the 10 classes"]),
    # run folders
    (["train", "--set", "train.epochs=1", "--out", "F/afile"], 2, ["afile is a file, not a folder"]),
    (["train", "--set", "train.epochs=1", "--out", "F/cfgdir/../bomb"], 2, ["is not empty and is not a vaelab run folder"]),
    (["train", "--resume", "F"], 2, ["no checkpoint.pt, so no epoch finished"]),
    (["train", "--resume", "F/nosuch"], 2, ["no such run folder"]),
    (["train", "F/nosuch.yaml", "--resume", "RUN"], 2, ["give either CONFIG or --resume RUN"]),
    (["train", "--resume", "RUN", "--set", "loss.kl_weight=50"], 2, ["loss differs (loss.kl_weight)"]),
    (["sample", "F/afile"], 2, ["afile"]),
    (["sample", "RUN", "--out", "F/afile/sub"], 1, ["afile/sub", "Not a directory"]),
    (["report", "RUN", "--out", "F/afile/x.html"], 1, ["afile"]),
    # use commands' options
    (["evaluate", "RUN", "--k", "0"], 2, ["--k must be >= 1"]),
    (["evaluate", "RUN", "--k", "abc"], 2, ["Invalid value for '--k'", "integer"]),
    (["evaluate", "RUN", "--bits", "0"], 2, ["--bits: each width must be in 1..16"]),
    (["evaluate", "RUN", "--limit", "0"], 2, ["--limit must be a whole number >= 1"]),
    (["reconstruct", "RUN", "--limit", "-1", "--out", "F/rec"], 2, ["--limit must be a whole number >= 1", "-1"]),
    (["reconstruct", "RUN", "--data", "nosuch:path", "--out", "F/rec"], 2, ["--data 'nosuch:path': data.name: unknown dataset"]),
    (["reconstruct", "RUN", "--data", "F/missing.yaml", "--out", "F/rec"], 2, ["no such YAML file"]),
    (["reconstruct", "RUN", "--data", "digits:F/empty.npy", "--out", "F/rec"], 2, ["data.path: dataset 'digits' reads no file"]),
    (["reconstruct", "RUN", "--input", "F/afile", "--out", "F/rec"], 2, ["--input", "not a folder"]),
    (["encode", "RUN", "--out", "F/e.npz", "--limit", "0"], 2, ["--limit must be"]),
    (["compare", "RUN", "--out", "F/c.png", "-n", "0"], 2, ["--limit must be"]),
    (["decode", "RUN", "F/corrupt.npz", "--out", "F/dec"], 2, ["corrupt.npz: cannot read latents (BadZipFile"]),
    (["decode", "RUN", "F/words.npy", "--out", "F/dec"], 2, ["words.npy: the array has dtype <U1"]),
    (["decode", "RUN", "F/zero_d.npy", "--out", "F/dec"], 2, ["zero_d.npy: the array is a single number"]),
    (["sample", "RUN", "--temperature", "nan", "--out", "F/s"], 2, ["--temperature must be a finite number > 0"]),
    (["sample", "RUN", "-n", "0", "--out", "F/s"], 2, ["-n must be in 1..100,000"]),
    (["sample", "RUN", "-n", "1000000000", "--out", "F/s"], 2, ["-n must be in 1..100,000"]),
    (["sample", "RUN", "--label", "3", "--out", "F/s"], 2, ["unconditional; drop --label"]),
    (["interpolate", "RUN", "0", "99999", "--out", "F/i"], 2, ["item index 99999 is out of range"]),
    (["interpolate", "RUN", "0", "1", "--steps", "1000000000", "--out", "F/i"], 2, ["--steps must be in 2..10,000"]),
    (["ood", "RUN", "--out-data", "digits", "--limit", "0"], 2, ["--limit must be"]),
    (["ood", "RUN", "--out-data", "digits", "--scores", "nosuch", "--limit", "4"], 2, ["--scores", "nosuch"]),
    (["ood", "RUN", "--out-data", "digits", "--regret-lr", "nan", "--limit", "4"], 2, ["regret.lr", "greater than 0"]),
    (["convert", "F/empty.npy"], 2, ["empty.npy: not a readable text config"]),
    (["data", "describe", "table", "F/empty.npy"], 2, ["empty.npy: no rows"]),
    (["data", "describe", "nosuch"], 2, ["unknown dataset 'nosuch'"]),
    (["check", "--nosuch"], 2, ["No such option: --nosuch"]),
    (["nosuch"], 2, ["No such command 'nosuch'"]),
]


@pytest.mark.parametrize("args,code,words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_clear_line(f, capsys, args, code, words):
    before = sorted(p.relative_to(f) for p in f.rglob("*"))
    argv = [a.replace("RUN", str(f / "run")).replace("F/", f"{f}/") if a != "F" else str(f) for a in args]
    o = vaelab(capsys, *argv)
    assert_one_line_error(o, code, *(w.replace("F/", f"{f}/") for w in words))
    assert sorted(p.relative_to(f) for p in f.rglob("*")) == before  # nothing written, nothing half-written


def test_malicious_checkpoint_is_refused_naming_the_global(tmp_path, capsys):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    run = tmp_path / "evil"
    run.mkdir()
    torch.save({"format": "vaelab-checkpoint", "version": 1, "config": "{}", "x": Payload()}, run / "checkpoint.pt")
    o = vaelab(capsys, "sample", run, "--out", tmp_path / "s")
    assert_one_line_error(o, 2, "refused, loading it would import", "system", "could run code")
    assert "weights_only=False" not in o.err and not (tmp_path / "s").exists()
