"""Run folders: each run is written into a hidden folder and published under its final name when complete.

Local only (the kernel writes into Kaggle's working folder), so kept out of core/.
"""
import os
import re
import secrets
import shutil
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from itertools import takewhile
from pathlib import Path
from typing import Iterator

from .core.errors import UserError
from .core.fileio import os_reason

INCOMPLETE_PREFIX = ".incomplete-"
# Run folders published by this process, for an interrupt's truthful "what was kept" message.
PUBLISHED: list[Path] = []
# new_run_id's names: UTC time to the second, then six hex digits; they sort in time order.
RUN_ID_PATTERN = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}")


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
    run_id = new_run_id()
    while (root / run_id).exists():
        run_id = new_run_id()
    temp, final = root / f"{INCOMPLETE_PREFIX}{run_id}", root / run_id
    try:
        temp.mkdir()
    except OSError as exc:
        _remove_empty(created)
        raise UserError(f"{root}: cannot write a run folder there ({os_reason(exc)})") from None
    try:
        yield temp
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
