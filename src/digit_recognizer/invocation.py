"""How this process was started, so that every command the kit prints runs as printed.

A fresh clone follows the README's `.venv/bin/digit-recognizer train` with the venv not activated:
a printed `digit-recognizer download` would then be `command not found`. So a printed command
starts the way this one did: the script's path as typed (`.venv/bin/digit-recognizer`), the bare
name only when that name on PATH is this very script, or `PYTHON -m digit_recognizer`.
"""
import os
import shlex
import shutil
import sys
from pathlib import Path

NAME = "digit-recognizer"


def program() -> str:
    """The words that start the kit again, the way this process was started."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "__main__.py" and script.parent.name == "digit_recognizer":
        python = (getattr(sys, "orig_argv", None) or [sys.executable])[0] or sys.executable
        return f"{shlex.quote(python)} -m digit_recognizer"
    if script is not None and script.name == NAME:
        found = shutil.which(NAME)
        if found and _same_file(found, script):
            return NAME
        return shlex.quote(str(script))
    return NAME  # imported by something else (a test, a notebook): the installed command's name


def command(rest: str) -> str:
    """`rest` (say "train --data data") as a command line that runs as printed."""
    return f"{program()} {rest}"


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
