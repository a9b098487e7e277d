"""Files and operating-system errors on the user's machine, each failure one line naming the path.

The kernel writes with core/fileio.py alone; here its atomic_write also says when the folder is missing.
"""
import json
import os
from pathlib import Path

from .core.errors import UserError
from .core.fileio import atomic_write, os_reason


def write_text(path: Path, text: str) -> None:
    try:
        atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))
    except UserError:
        if not path.parent.is_dir():
            raise UserError(f"{path}: cannot write it: the folder {path.parent} does not exist") from None
        raise


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError nobody caught nearer its cause: the path involved and the reason."""
    where = exc.filename if exc.filename is not None else "?"
    return f"{os.fsdecode(where) if isinstance(where, bytes) else where}: {os_reason(exc)}"


def make_folder(folder: Path, purpose: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{folder}: not a folder; {purpose}") from None
    except OSError as exc:  # a folder we may not write in, a full disk
        raise UserError(f"{folder}: cannot create it ({os_reason(exc)}); {purpose}") from None
