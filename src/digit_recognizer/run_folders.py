"""Run folders: each run is written into a hidden folder and published under its final name when complete.

Local only (the kernel writes into Kaggle's working folder), so kept out of core/.
"""
import os
import secrets
import shutil
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from itertools import takewhile
from pathlib import Path
from typing import Iterator

from .core.errors import UserError

INCOMPLETE_PREFIX = ".incomplete-"


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
        raise UserError(f"{root}: cannot hold run folders ({exc.strerror}); --out takes a folder") from None
    run_id = new_run_id()
    while (root / run_id).exists():
        run_id = new_run_id()
    temp = root / f"{INCOMPLETE_PREFIX}{run_id}"
    temp.mkdir()
    try:
        yield temp
        final = root / run_id
        os.rename(temp, final)
        temp = final
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        for folder in created:  # nor the folders made for it (rmdir removes only empty ones)
            with suppress(OSError):
                folder.rmdir()
        raise


def publish_name(temp: Path) -> Path:
    """The name a folder made by run_folder will have once published."""
    return temp.with_name(temp.name.removeprefix(INCOMPLETE_PREFIX))
