"""Files and operating-system errors on the user's machine, each failure one line naming the path.

The kernel writes its own outputs whole (kernel.write_whole); this is the same for the commands that must
not load the kernel (and torch): records, downloads, pushes. write_text also says when the folder is missing.
"""
import json
import os
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

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

LOCK_WAIT_SECONDS = 30.0  # a record's read-modify-write takes milliseconds; this only ends a stuck wait


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


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """The kit's record files in `folder` to this process alone for one read-modify-write, so that
    writers side by side (six `submit`s at once) lose nothing: an flock on the folder itself, which
    leaves no lock file behind. Where no lock can be taken (a file system without flock, a system
    without fcntl, a folder that cannot be opened) it goes on without one, as before. A wait is bounded:
    past LOCK_WAIT_SECONDS it is one UserError line."""
    try:
        import fcntl
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        yield
        return
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UserError(f"{folder}: another digit-recognizer has been writing its records there "
                                    f"for {LOCK_WAIT_SECONDS:g} s; nothing was changed: try again when it has "
                                    f"finished") from None
                time.sleep(0.01)
            except OSError:  # ENOLCK, EINVAL: this file system keeps no such locks
                break
        yield
    finally:
        os.close(handle)  # closing the folder's descriptor releases the lock
