"""Run the real `vaelab` entry point in-process (fast) and check that a failure is one clear line."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from vaelab.cli import main


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def vaelab(capsys: pytest.CaptureFixture, *args) -> Outcome:
    """`vaelab ARGS...` through `vaelab.cli.main` (what the console script runs), in this process."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    cap = capsys.readouterr()
    return Outcome(code, cap.out, cap.err)


def assert_one_line_error(o: Outcome, code: int, *needles: str) -> None:
    """Exit `code`, stderr a single `error: ...` line (besides one-line `warning: ...`s) containing every needle,
    and no traceback anywhere."""
    assert o.code == code, f"exit {o.code} (wanted {code})\nstdout: {o.out}\nstderr: {o.err}"
    lines = [line for line in o.err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), o.err
    assert "Traceback" not in o.err + o.out
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
