"""Writing without ever leaving a half-written file or mixed outputs.

Every write goes through here, so a failure of the operating system (a read-only folder, a full
disk, a missing folder) becomes one UserError naming the path and the reason, in one place.
"""
import errno
import json
import os
import secrets
import shutil
import signal
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserError

INCOMPLETE_PREFIX = ".incomplete-"
# Folders published by this process, for an interrupt's truthful "what was kept" message.
PUBLISHED: list[Path] = []


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


@contextmanager
def replacing_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder to write into; on success its files replace `target`'s as one unit.

    The folder is a hidden sibling of `target`, published by one rename, or by one atomic swap of the
    two folders (renameat2 RENAME_EXCHANGE) when `target` holds only earlier outputs, so `target` is
    all-old or all-new after any interruption, SIGKILL included. Where that cannot be (`target` is a
    mount point such as /kaggle/working, holds the current folder or files this run does not write,
    or its parent is read-only) the folder is inside `target` and its files are moved in one by one,
    with Ctrl-C and SIGTERM held back meanwhile. Leftovers of killed runs are swept on the next call.
    """
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: not a folder; --output takes the folder the outputs go in")
    _sweep_leftovers(target)
    token = f"{os.getpid()}-{secrets.token_hex(3)}"
    staging = _staging_folder(target, token)
    try:
        yield staging
        with interrupts_held():  # a Ctrl-C now is delivered once the outputs are all in place
            if staging.parent == target or not _swap_into(staging, target):
                for new in sorted(staging.iterdir()):
                    os.replace(new, target / new.name)
            PUBLISHED.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the new outputs on failure, the old ones after a swap


def _staging_folder(target: Path, token: str) -> Path:
    """A new hidden sibling of target where it can be swapped in whole, else a new hidden folder inside it."""
    purpose = "--output takes the folder the outputs go in"
    if target.is_dir():
        _check_writable(target, token)  # before the work, not after it
    if not (target.is_dir() and (os.path.ismount(target) or _holds_cwd(target))):
        make_folder(target.parent, purpose)
        beside = target.parent / f".{target.name}{INCOMPLETE_PREFIX}{token}"
        try:
            beside.mkdir()
            return beside
        except OSError:
            pass  # e.g. a read-only parent: stage inside target instead
    make_folder(target, purpose)
    inside = target / f"{INCOMPLETE_PREFIX}{token}"
    inside.mkdir()
    return inside


def _check_writable(folder: Path, token: str) -> None:
    probe = folder / f"{INCOMPLETE_PREFIX}{token}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the outputs there ({os_reason(exc)})") from None


def _holds_cwd(folder: Path) -> bool:
    try:
        return Path.cwd().resolve().is_relative_to(folder.resolve())
    except OSError:
        return True


def _swap_into(staging: Path, target: Path) -> bool:
    """Publish staging as target in one step; False when that cannot be done as one unit."""
    try:
        os.rename(staging, target)  # atomic when target is missing or an empty folder
        return True
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            return False
    if not {p.name for p in target.iterdir()} <= {p.name for p in staging.iterdir()}:
        return False  # the user's own files are there too: replace only what was written
    import ctypes

    libc, at_cwd, rename_exchange = ctypes.CDLL(None, use_errno=True), -100, 2
    return hasattr(libc, "renameat2") and libc.renameat2(
        at_cwd, os.fsencode(staging), at_cwd, os.fsencode(target), rename_exchange) == 0


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done, then arrive as usual."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _sweep_leftovers(target: Path) -> None:
    """Remove the staging folders that killed runs left beside or inside target."""
    for folder, prefix in ((target.parent, f".{target.name}{INCOMPLETE_PREFIX}"), (target, INCOMPLETE_PREFIX)):
        with suppress(OSError):
            for leftover in folder.glob(f"{prefix}*"):
                if leftover.is_dir() and not _owner_alive(leftover.name.removeprefix(prefix)):
                    shutil.rmtree(leftover, ignore_errors=True)


def _owner_alive(token: str) -> bool:
    """Whether the process named by a leftover's '<pid>-<hex>' token is another one, still running."""
    pid = token.split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():  # an earlier call in this process is over
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # alive, and not ours to signal
    return True
