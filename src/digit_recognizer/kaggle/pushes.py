"""The local record of each kernel push: which kernel version Kaggle made of which local code.

`kernels push` appends one entry to kernel-pushes.json beside kernel-metadata.json; status, output,
logs and `submit --kernel` read the newest entry for the kernel to know which version they are about
(asking Kaggle for the kernel's *latest session* instead can answer with the previous run).
"""
import hashlib
import json
from pathlib import Path

from ..errors import UserError
from ..local_io import write_json

PUSHES_NAME = "kernel-pushes.json"


def read_pushes(root: Path) -> list[dict]:
    path = root / PUSHES_NAME
    if not path.is_file():
        return []
    try:
        pushes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # ValueError: an int past 4,300 digits too
        pushes = None
    if not isinstance(pushes, list) or not all(isinstance(p, dict) for p in pushes):
        raise UserError(f"{path}: not a JSON list of push records; move it aside (pass --version N meanwhile)")
    return pushes


def record_push(root: Path, entry: dict) -> None:
    write_json(root / PUSHES_NAME, read_pushes(root) + [entry])


def latest_push(root: Path, kernel: str) -> dict | None:
    """The newest recorded push of `kernel` that Kaggle gave a version number and ran (a --no-run save
    has no session to report on)."""
    for entry in reversed(read_pushes(root)):
        if entry.get("kernel") == kernel and isinstance(entry.get("version"), int) and not entry.get("no_run"):
            return entry
    return None


def push_of(root: Path, kernel: str, version: int | None) -> dict | None:
    """The recorded push that made `kernel` version `version` (None when not pushed from here)."""
    return next((p for p in read_pushes(root) if p.get("kernel") == kernel and p.get("version") == version), None)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
