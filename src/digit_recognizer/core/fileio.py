"""Writing each file whole: a temporary name beside it, then one rename into place.

Every write goes through here, so a failure of the operating system (a read-only folder, a full
disk, a missing folder) becomes one UserError naming the path and the reason, in one place.
"""
import errno
import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Callable

from .errors import UserError


def os_reason(exc: OSError) -> str:
    """'no space left on device', 'read-only file system', ... as a lower-case phrase."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError nobody caught nearer its cause: the path involved and the reason."""
    where = exc.filename if exc.filename is not None else "?"
    return f"{os.fsdecode(where) if isinstance(where, bytes) else where}: {os_reason(exc)}"


def write_failure(path: Path, exc: OSError) -> UserError:
    if exc.errno == errno.ENOENT and not path.parent.is_dir():
        return UserError(f"{path}: cannot write it: the folder {path.parent} does not exist")
    return UserError(f"{path}: cannot write it ({os_reason(exc)}); nothing was written")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temp) on a temporary name beside `path`, then rename it into place.

    An OSError (full disk, read-only folder) becomes one UserError naming `path`; the temporary
    file is removed whatever happens, so nothing half-written is left.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        with suppress(OSError):
            temp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def make_folder(folder: Path, purpose: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{folder}: not a folder; {purpose}") from None
    except OSError as exc:  # a folder we may not write in, a full disk
        raise UserError(f"{folder}: cannot create it ({os_reason(exc)}); {purpose}") from None
