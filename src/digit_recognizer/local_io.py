"""Files and operating-system errors on the user's machine, each failure one line naming the path.

The kernel writes its own outputs whole (kernel.write_whole); this is the same for the commands that must
not load the kernel (and torch): records, downloads, pushes. write_text also says when the folder is missing.
"""
import json
import os
from contextlib import suppress
from pathlib import Path

from .errors import UserError, os_reason


def atomic_write(path: Path, write) -> None:
    """write(temporary path), then rename it to `path`: nothing half-written, or one line on why not."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write it ({os_reason(exc)}); nothing was written") from None
    finally:
        with suppress(OSError):  # nothing half-written is left, whatever happened
            temp.unlink(missing_ok=True)


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
