"""Run folders: each run is written into a hidden folder and published under its final name when complete.

Local only (the kernel writes into Kaggle's working folder), so kept out of core/.
"""
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from itertools import takewhile
from pathlib import Path
from typing import Iterator

from .errors import UserError
from .errors import os_reason

INCOMPLETE_PREFIX = ".incomplete-"
# Run folders published by this process, for an interrupt's truthful "what was kept" message.
PUBLISHED: list[Path] = []
# new_run_id's names: UTC time to the second, then six hex digits; they sort in time order.
RUN_ID_PATTERN = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}")
STAGING_NAME = re.compile(re.escape(INCOMPLETE_PREFIX) + RUN_ID_PATTERN.pattern)
OWNER_FILE = ".digit-recognizer-owner"  # in a staging folder while its run writes it: pid, start time, host


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@contextmanager
def run_folder(root: Path) -> Iterator[Path]:
    """Yield an empty hidden folder to write a run into; publish it under its final name on success.

    On any failure (an exception, Ctrl-C, SIGTERM) the hidden folder is removed, so `root` holds
    exactly what it held before. A finished run's name is never reused.
    """
    created = list(takewhile(lambda folder: not folder.exists(), (root, *root.parents)))  # deepest first
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, or a folder we may not write in
        raise UserError(f"{root}: cannot hold run folders ({os_reason(exc)}); --runs takes a folder") from None
    refuse_append_only(root)
    run_id = new_run_id()
    while (root / run_id).exists():
        run_id = new_run_id()
    temp, final = root / f"{INCOMPLETE_PREFIX}{run_id}", root / run_id
    sweep_leftovers(root)
    try:
        temp.mkdir()
        (temp / OWNER_FILE).write_text(json.dumps(_owner()))  # so a later run may sweep it, if this one is killed
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        _remove_empty(created)
        raise UserError(f"{root}: cannot write a run folder there ({os_reason(exc)})") from None
    try:
        yield temp
        (temp / OWNER_FILE).unlink()
        os.rename(temp, final)
        PUBLISHED.append(final)
    except BaseException as exc:
        if not temp.exists() and final.exists():  # interrupted just after the rename: it is published
            PUBLISHED.append(final)
            raise
        shutil.rmtree(temp, ignore_errors=True)
        _remove_empty(created)  # nor the folders made for it
        if isinstance(exc, UserError):  # name the run's files as the user knows them, not by the hidden name
            message = str(exc).replace(str(temp), str(final)).replace("nothing was written", "no run folder was kept")
            raise UserError(message) from None
        raise


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
    provably the kit's: a staging name with a run id, this user's, holding the owner file that names a
    process that is gone (a pid alone is not enough: pids are reused, so its start time must match)."""
    try:
        candidates = [p for p in root.iterdir() if STAGING_NAME.fullmatch(p.name)]
    except OSError:
        return
    for folder in candidates:
        try:
            info = folder.lstat()
            owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue  # no owner file: not provably the kit's, so not ours to delete
        if stat.S_ISDIR(info.st_mode) and (not hasattr(os, "getuid") or info.st_uid == os.getuid()) \
                and isinstance(owner, dict) and _gone(owner):
            shutil.rmtree(folder, ignore_errors=True)


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
