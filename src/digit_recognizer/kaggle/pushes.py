"""The local record of each kernel push: which kernel version Kaggle made of which local code.

`kernels push` appends one entry to kernel-pushes.json beside kernel-metadata.json; status, output,
logs and `submit --kernel` read the newest entry for the kernel to know which version they are about
(asking Kaggle for the kernel's *latest session* instead can answer with the previous run). Every
change is a read-modify-write under folder_lock, so pushes side by side each keep their entry.

When a push's answer is lost (no answer in time, a server error, an unreadable answer), Kaggle may have
made the version all the same: the entry is kept *pending*, with the highest version known before it,
and settled later: by the next push from here (whose number shows whether a version came between), or
by asking Kaggle for the version after the one known (settle_pending, from `kernels status`, ...).
"""
import hashlib
import json
from pathlib import Path

from ..errors import UserError
from ..local_io import folder_lock, write_json

PUSHES_NAME = "kernel-pushes.json"
SETTLE_SPAN = 50  # versions a later push may be ahead of a pending one and still settle it


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


def record_push(root: Path, entry: dict) -> list[str]:
    """Append a push's entry (under the lock: nobody else's is lost). A push with a version number also
    settles the kernel's pending entries it can: when no version between a pending entry's starting
    point and this one is unaccounted for, that push made none (its entry is removed); when exactly one
    is, that push made it. Returns lines saying so."""
    with folder_lock(root):
        pushes, said = read_pushes(root), []
        number = entry.get("version")
        if is_version(number):
            known = {p["version"] for p in pushes
                     if p.get("kernel") == entry["kernel"] and is_version(p.get("version"))}
            for pending in [p for p in pushes if p.get("kernel") == entry["kernel"] and p.get("pending")]:
                after = pending.get("after_version")
                if not is_version(after, zero=True) or not 0 < number - after <= SETTLE_SPAN:
                    continue
                between = [v for v in range(after + 1, number) if v not in known]
                if not between:
                    pushes.remove(pending)
                    said.append(f"the push at {pending.get('pushed_at')}, whose answer was lost, made no version "
                                f"(the next one is {number}); its pending record is removed")
                elif len(between) == 1:
                    pending.update(version=between[0], pending=False)
                    known.add(between[0])
                    said.append(f"the push at {pending.get('pushed_at')}, whose answer was lost, made version "
                                f"{between[0]}; recorded")
        write_json(root / PUSHES_NAME, pushes + [entry])
    return said


def confirm_push(root: Path, pending: dict, number: int) -> None:
    """A pending entry settled: Kaggle made version `number` from it."""
    with folder_lock(root):
        pushes = read_pushes(root)
        for entry in pushes:
            same = all(entry.get(k) == pending.get(k) for k in ("kernel", "pushed_at", "code_sha256"))
            if entry.get("pending") and same:
                entry.update(version=number, pending=False)
        write_json(root / PUSHES_NAME, pushes)


def is_version(value, zero: bool = False) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= (0 if zero else 1)


def known_versions(root: Path, kernel: str) -> set[int]:
    return {p["version"] for p in read_pushes(root) if p.get("kernel") == kernel and is_version(p.get("version"))}


def next_unknown(after: int, known: set[int]) -> int:
    """The first version after `after` that no entry here accounts for: the one a pending push made, if any."""
    number = after + 1
    while number in known:
        number += 1
    return number


def unsettled(root: Path, kernel: str) -> list[dict]:
    """The kernel's pending entries newer than its newest version recorded here: the ones still open."""
    pushes = [p for p in read_pushes(root) if p.get("kernel") == kernel]
    since = max((i for i, p in enumerate(pushes) if is_version(p.get("version"))), default=-1)
    return [p for p in pushes[since + 1:] if p.get("pending") and is_version(p.get("after_version"), zero=True)]


def latest_push(root: Path, kernel: str) -> dict | None:
    """The newest recorded push of `kernel` that Kaggle gave a version number and ran (a --no-run save
    has no session to report on)."""
    for entry in reversed(read_pushes(root)):
        if entry.get("kernel") == kernel and is_version(entry.get("version")) and not entry.get("no_run"):
            return entry
    return None


def push_of(root: Path, kernel: str, version: int | None) -> dict | None:
    """The recorded push that made `kernel` version `version` (None when not pushed from here)."""
    return next((p for p in read_pushes(root) if p.get("kernel") == kernel and p.get("version") == version), None)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
