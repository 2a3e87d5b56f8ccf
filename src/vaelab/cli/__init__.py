"""The `vaelab` command: thin commands that parse, call one library function and print.

Each command group lives in its own module and registers itself on `app`; `main` turns vaelab's
errors into one clear line and exit code 2 instead of a traceback.
"""
from __future__ import annotations

import sys

from vaelab.cli.app import app

# command modules register themselves on import
from vaelab.cli import convert_cmds, data_cmds, hardware_cmds, interop_cmds, search_cmds, train_cmds, use_cmds  # noqa: F401,E402


def main(argv: list[str] | None = None) -> None:
    """The `vaelab` entry point: one line on stderr and an exit code (see `vaelab.cli.app`) for every failure."""
    import warnings

    from pydantic import ValidationError

    from vaelab.cli.app import INTERRUPTED, RUNTIME, USAGE, error_line, exit_code, validation_line
    from vaelab.core.errors import VaelabError, VaelabWarning
    from vaelab.core.registry import UnknownNameError

    python_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # vaelab's own warnings as one line
        if issubclass(category, VaelabWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            python_show(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        app(args=argv)
    except (VaelabError, UnknownNameError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        sys.exit(USAGE if isinstance(e, UnknownNameError) else exit_code(e))
    except ValidationError as e:  # a pydantic model validated outside load_config: one line, never its traceback
        print(f"error: {validation_line(e)}", file=sys.stderr)
        sys.exit(USAGE)
    except (OSError, MemoryError) as e:  # unwritable output folder, disk full, ...: the file and the fix
        print(f"error: {error_line(e)}", file=sys.stderr)
        sys.exit(RUNTIME)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    finally:
        warnings.showwarning = python_show
