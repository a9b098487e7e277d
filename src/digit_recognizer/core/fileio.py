"""Writing without ever leaving a half-written file or mixed outputs.

Every write goes through here, so a failure of the operating system (a read-only folder, a full
disk, a missing folder) becomes one UserError naming the path and the reason, in one place.
"""
import errno
import json
import os
import secrets
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserError

INCOMPLETE_PREFIX = ".incomplete-"
REPLACED_MARK = ".replaced-"
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

    The folder is a hidden sibling of `target`, and publishing swaps the two in one atomic rename
    (renameat2 RENAME_EXCHANGE), so `target` is all-old or all-new after any interruption, SIGKILL
    included; the old outputs are then removed. Leftovers of killed runs are swept on the next call.
    Where a swap is impossible (`target` is a mount point, e.g. /kaggle/working, its parent is read-only,
    the current folder is below it, or it holds files this run does not replace), the staging folder
    is inside `target` and only the files written are replaced, old ones moved aside first and put
    back on any error or interrupt; only SIGKILL in that short window can leave a mix.
    """
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: not a folder; --output takes the folder the outputs go in")
    _sweep_leftovers(target)
    token = f"{os.getpid()}-{secrets.token_hex(3)}"
    if target.is_dir():
        _check_writable(target, token)  # before the work, not after it
    staging = _staging_beside(target, token)
    inside = staging is None
    if inside:
        make_folder(target, "--output takes the folder the outputs go in")
        staging = target / f"{INCOMPLETE_PREFIX}{token}"
        try:
            staging.mkdir()
        except OSError as exc:
            raise UserError(f"{target}: cannot write the outputs there ({os_reason(exc)})") from None
    try:
        yield staging
        if inside or not _swap_into(staging, target):
            _replace_files(staging, target, token)
        PUBLISHED.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the new outputs on failure, the old ones after a swap


def _staging_beside(target: Path, token: str) -> Path | None:
    """A new hidden sibling of target to stage into, or None where the outputs must be staged inside it."""
    if target.exists() and (os.path.ismount(target) or _holds_cwd(target)):
        return None
    if not target.exists():
        make_folder(target.parent, "--output takes the folder the outputs go in")
    staging = target.parent / f".{target.name}{INCOMPLETE_PREFIX}{token}"
    try:
        staging.mkdir()
    except OSError as exc:
        if target.is_dir():
            return None  # e.g. a read-only parent: stage inside target instead
        raise UserError(f"{target.parent}: cannot write the outputs there ({os_reason(exc)})") from None
    return staging


def _check_writable(folder: Path, token: str) -> None:
    probe = folder / f"{INCOMPLETE_PREFIX}{token}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the outputs there ({os_reason(exc)})") from None


def _holds_cwd(folder: Path) -> bool:
    try:
        cwd, resolved = Path.cwd().resolve(), folder.resolve()
    except OSError:
        return True
    return cwd == resolved or resolved in cwd.parents


def _swap_into(staging: Path, target: Path) -> bool:
    """Publish staging as target in one step; False when that cannot be done as one unit."""
    try:
        os.rename(staging, target)  # atomic when target is missing or an empty folder
        return True
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            return False  # e.g. target is a mount point: replace the files inside it instead
    old_names = {p.name for p in target.iterdir()}
    if not old_names <= {p.name for p in staging.iterdir()}:
        return False  # the user's own files are there too: replace only what was written
    return _exchange(staging, target)


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two folders (Linux renameat2 RENAME_EXCHANGE); False where that is unsupported."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, rename_exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBUSY, errno.EXDEV):
        return False
    raise UserError(f"{second}: cannot publish the outputs ({os.strerror(code).lower()})")


def _replace_files(staging: Path, target: Path, token: str) -> None:
    """Move target's files of the same names aside, the new ones in, then drop the old; undo on failure."""
    aside = target / f"{REPLACED_MARK}{token}"
    names = sorted(p.name for p in staging.iterdir())
    moved_aside, moved_in = [], []
    try:
        aside.mkdir()
        for name in names:
            if (target / name).exists() or (target / name).is_symlink():
                os.rename(target / name, aside / name)
                moved_aside.append(name)
        for name in names:
            os.rename(staging / name, target / name)
            moved_in.append(name)
    except BaseException as exc:
        for name in moved_in:
            with suppress(OSError):
                os.rename(target / name, staging / name)
        for name in moved_aside:
            with suppress(OSError):
                os.rename(aside / name, target / name)
        with suppress(OSError):
            aside.rmdir()
        if isinstance(exc, OSError):
            raise UserError(f"{target}: cannot publish the outputs ({os_reason(exc)}); "
                            f"its earlier files are as they were") from None
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _sweep_leftovers(target: Path) -> None:
    """Remove staging and set-aside folders that killed runs left beside or inside target."""
    places = [(target.parent, f".{target.name}{INCOMPLETE_PREFIX}"), (target, INCOMPLETE_PREFIX),
              (target, REPLACED_MARK)]
    for folder, prefix in places:
        with suppress(OSError):
            for leftover in folder.glob(f"{prefix}*"):
                if not _owner_alive(leftover.name.removeprefix(prefix)) and leftover.is_dir():
                    _restore_or_remove(leftover, target, prefix == REPLACED_MARK)


def _restore_or_remove(leftover: Path, target: Path, set_aside: bool) -> None:
    if set_aside:  # old files moved aside by a killed run: put back any that were not replaced
        for old in leftover.iterdir():
            if not (target / old.name).exists():
                with suppress(OSError):
                    os.rename(old, target / old.name)
    shutil.rmtree(leftover, ignore_errors=True)


def _owner_alive(token: str) -> bool:
    """Whether the process named by a leftover's '<pid>-<hex>' token is still running."""
    pid = token.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return int(pid) != os.getpid()  # an earlier call in this process is over

