"""Run folders: each run is written into a hidden folder and published under its final name when complete.

Local only: the kernel writes into Kaggle's working folder instead, so none of this is in kernel.py.
"""
import errno
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import time
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from itertools import takewhile
from pathlib import Path
from typing import Iterator

from .errors import UserError, os_reason
from .interrupt_hold import interrupts_deferred

INCOMPLETE_PREFIX = ".incomplete-"
# Run folders published by this process, for an interrupt's truthful "what was kept" message.
PUBLISHED: list[Path] = []
# Staging folders this process could not remove after a failure, for the same message.
LEFT_BEHIND: list[Path] = []
# new_run_id's names: UTC time to the second, then six hex digits; they sort in time order.
RUN_ID_PATTERN = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}")
STAGING_NAME = re.compile(re.escape(INCOMPLETE_PREFIX) + RUN_ID_PATTERN.pattern)
OWNER_FILE = ".digit-recognizer-owner"  # in a staging folder while its run writes it: pid, start time, host
DEAD_START_SECONDS = 60  # how long a staging folder without a whole owner file must be still to be swept


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@contextmanager
def run_folder(root: Path) -> Iterator[Path]:
    """Yield an empty hidden folder to write a run into; publish it under its final name on success.

    On any failure (an exception, Ctrl-C, SIGTERM, SIGHUP), from the first step on, the hidden folder
    is removed, so `root` holds exactly what it held before. A finished run's name is never reused.
    """
    created = list(takewhile(lambda folder: not folder.exists(), (root, *root.parents)))  # deepest first
    staging: list[Path] = []  # the hidden folder once it exists: from then on, any failure removes it
    try:
        temp = _make_staging_folder(root, staging)
        final = publish_name(temp)
        yield temp
        (temp / OWNER_FILE).unlink()
        os.rename(temp, final)
        PUBLISHED.append(final)
    except BaseException as exc:
        if staging and not staging[0].exists() and publish_name(staging[0]).exists():
            PUBLISHED.append(publish_name(staging[0]))  # interrupted just after the rename: it is published
            raise
        with interrupts_deferred():  # a Ctrl-C now must not cut the clean-up short: it comes after
            if staging:
                _remove_staging(staging[0])
            _remove_empty(created)  # nor the folders made for it
        if isinstance(exc, UserError) and staging:  # name the run's files as the user knows them
            temp = staging[0]
            message = str(exc).replace(str(temp), str(publish_name(temp)))
            raise UserError(message.replace("nothing was written", "no run folder was kept")) from None
        raise


def _make_staging_folder(root: Path, staging: list[Path]) -> Path:
    """Make `root` (if need be) and in it the hidden folder with its owner file; append it to `staging`."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, or a folder we may not write in
        raise UserError(f"{root}: cannot hold run folders ({os_reason(exc)}); --runs takes a folder") from None
    refuse_append_only(root)
    run_id = new_run_id()
    while (root / run_id).exists():
        run_id = new_run_id()
    temp = root / f"{INCOMPLETE_PREFIX}{run_id}"
    sweep_leftovers(root)
    try:
        # Ctrl-C, SIGTERM and SIGHUP are held back across these three steps and delivered after them, so
        # that the folder is never there without its owner file or unknown to the clean-up (an interrupt
        # between mkdir and the owner file's write used to leave the folder behind, never swept, under
        # a message saying nothing was left). A kill cannot be held: what it can leave here, the folder
        # alone or with an owner file not yet written, is what sweep_leftovers knows as a dead start.
        with interrupts_deferred():
            temp.mkdir()
            staging.append(temp)
            _write_owner_file(temp)
    except OSError as exc:
        raise UserError(f"{root}: cannot write a run folder there ({os_reason(exc)})") from None
    return temp


def _write_owner_file(folder: Path) -> None:
    """The owner file, so that a later run may sweep the folder if this one is killed. One write() of a
    few bytes to a new file: a kill leaves it whole or empty, never half written."""
    content = json.dumps(_owner()).encode()
    handle = os.open(folder / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if os.write(handle, content) != len(content):
            raise OSError(errno.EIO, "the owner file was written short")
    finally:
        os.close(handle)


def _remove_staging(folder: Path) -> None:
    """Remove this run's staging folder; one that cannot be removed is noted in LEFT_BEHIND."""
    if not _remove_owner_file_last(folder):
        LEFT_BEHIND.append(folder)


def _remove_owner_file_last(folder: Path) -> bool:
    """Remove a staging folder, its owner file last: a kill in the middle leaves a folder that a later run
    can still prove is the kit's, and sweep. Whether it is gone."""
    try:
        for part in folder.iterdir():
            if part.name != OWNER_FILE:
                if part.is_dir() and not part.is_symlink():
                    shutil.rmtree(part, ignore_errors=True)
                else:
                    part.unlink(missing_ok=True)
        (folder / OWNER_FILE).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        pass
    return not os.path.lexists(folder)


def refuse_append_only(root: Path) -> None:
    """An append-only or immutable folder (chattr +a / +i) lets a run folder be made but never renamed
    or removed, so a run there would end as a staging folder nobody can sweep: refused before training."""
    try:
        import fcntl

        fd = os.open(root, os.O_RDONLY)
    except (ImportError, OSError):
        return
    try:
        flags = bytearray(8)
        fcntl.ioctl(fd, 0x80086601, flags)  # FS_IOC_GETFLAGS
    except OSError:
        return  # a file system without these flags
    finally:
        os.close(fd)
    if int.from_bytes(flags[:4], sys.byteorder) & 0x30:  # FS_APPEND_FL | FS_IMMUTABLE_FL
        raise UserError(f"{root}: append-only or immutable (chattr +a or +i), so a run folder could be written "
                        f"there but never published or removed; --runs takes another folder (or run 'chattr -a {root}')")


def sweep_leftovers(root: Path) -> None:
    """Remove the staging folders that killed runs left in root (SIGKILL, SIGUSR1, a power cut). Only
    provably the kit's: a staging name with a run id, this user's, and either holding the owner file that
    names a process that is gone (a pid alone is not enough: pids are reused, so its start time must
    match), or a start that was killed (see _dead_start)."""
    try:
        candidates = [p for p in root.iterdir() if STAGING_NAME.fullmatch(p.name)]
    except OSError:
        return
    for folder in candidates:
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            continue
        owner = _read_owner(folder)
        if (isinstance(owner, dict) and _gone(owner)) or (owner is None and _dead_start(folder)):
            _remove_owner_file_last(folder)


def _read_owner(folder: Path):
    """The owner file's JSON, or None where there is no owner file or it is not (yet) written whole."""
    try:
        return json.loads((folder / OWNER_FILE).read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def _dead_start(folder: Path) -> bool:
    """A run killed as it started, between making its folder and writing the owner file: the folder holds
    nothing, or nothing but an owner file that is empty or not JSON, and neither has changed for a minute
    (a live run is past this step within microseconds). Nothing of anyone's is in it, so removing it loses
    nothing; anything else in it, and it is kept."""
    try:
        parts = list(folder.iterdir())
        if [part.name for part in parts] not in ([], [OWNER_FILE]):
            return False
        last_change = folder.lstat().st_mtime
        if parts:
            owner = parts[0].lstat()
            if not stat.S_ISREG(owner.st_mode) or _read_owner(folder) is not None:
                return False  # not a file, or whole JSON: not what a killed start leaves
            last_change = max(last_change, owner.st_mtime)
    except OSError:
        return False
    return time.time() - last_change >= DEAD_START_SECONDS


def _owner() -> dict:
    return {"pid": os.getpid(), "started": _start_time(os.getpid()), "host": socket.gethostname()}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _gone(owner: dict) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or owner.get("host") != socket.gethostname():
        return False  # another machine's run (a shared folder): its processes cannot be seen from here
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    started = _start_time(pid)
    return started is not None and owner.get("started") is not None and started != owner["started"]


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; rmdir removes only empty ones
        with suppress(OSError):
            folder.rmdir()


def publish_name(temp: Path) -> Path:
    """The name a folder made by run_folder will have once published."""
    return temp.with_name(temp.name.removeprefix(INCOMPLETE_PREFIX))


def published_runs(root: Path) -> list[Path]:
    """Published run folders under root, oldest first (hidden, unfinished ones are skipped)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and RUN_ID_PATTERN.fullmatch(p.name))
