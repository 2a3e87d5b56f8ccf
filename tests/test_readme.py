"""Every Python block of README.md runs as written (in a fresh folder), and every shell line names a real command."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    """The bodies of the fenced blocks whose info string is `lang` ('' for plain fences)."""
    out, body, info = [], None, None
    for line in README.splitlines():
        if line.startswith("```"):
            if body is None:
                body, info = [], line[3:].strip()
            else:
                if info == lang:
                    out.append("\n".join(body) + "\n")
                body = None
        elif body is not None:
            body.append(line)
    return out


def test_readme_has_python_blocks():
    assert len(blocks("python")) >= 3


def test_every_python_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    namespace: dict = {}
    for i, code in enumerate(blocks("python")):  # in order, sharing names like a notebook
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as e:  # report which block failed
            raise AssertionError(f"README python block {i + 1} fails: {type(e).__name__}: {e}\n{code}") from e
    assert tuple(namespace["grid"].shape) == (20, 1, 8, 8)
    assert tuple(namespace["z"].shape) == (4, 4, 4, 4)


def _commands() -> list[list[str]]:
    out = []
    for block in blocks(""):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.strip())
                if words and words[0] == ".venv/bin/vaelab":
                    out.append(words[1:])
    return out


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w)[:60])
def test_every_readme_command_parses(words):
    """The command and its options exist (parsed by the CLI with --help appended, so nothing runs)."""
    from typer.testing import CliRunner

    from vaelab.cli import app

    res = CliRunner().invoke(app, [*words[:1], "--help"])
    assert res.exit_code == 0, f"vaelab {words[0]}: {res.output}"
    if len(words) > 1 and not words[1].startswith("-"):  # a group's subcommand (vaelab data make-amass) has its own options
        sub = CliRunner().invoke(app, [*words[:2], "--help"])
        res = sub if sub.exit_code == 0 else res
    for w in words[1:]:
        if w.startswith("--") and w not in ("--help",):
            assert w.split("=")[0] in res.output, f"vaelab {words[0]} has no option {w}"
