"""Writing without ever leaving a half-written file or a run folder that looks finished."""
import json
import os
import secrets
import shutil
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from itertools import takewhile
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserError

INCOMPLETE_PREFIX = ".incomplete-"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temp) on a temporary name beside `path`, then rename it into place."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


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
