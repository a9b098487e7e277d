"""The parse cache: parsed CSVs kept on disk, so a second run on the same data skips parsing.

It must never change a result, fail a run, or grow without bound:
- an entry is keyed on the file's path, size and the SHA-256 of its bytes (the very bytes then
  parsed; timestamps are not trusted, since many file systems keep them to the second), and is used
  only when those match and its own bytes pass a checksum (with the shape and dtype); on any doubt
  the CSV is parsed again;
- a write goes to a temporary file that is removed whatever happens; temporary files that a killed
  run left are swept after a minute, once their writer is gone;
- nothing is deleted that the kit did not make (entries and temporary files are recognised by name,
  owner and contents), since the folder may be one the user named and keeps other files in;
- a cache that cannot be written costs only speed, with at most one warning line;
- the total size is capped (DIGIT_RECOGNIZER_CACHE_MAX_BYTES, default 1 GiB), least recently used
  entries dropped first; `digit-recognizer cache` lists it and `cache --clear` empties it.
"""
import argparse
import hashlib
import json
import os
import re
import secrets
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where entries are read or written, not when `cache` lists them
    import numpy as np


CACHE_ENV = "DIGIT_RECOGNIZER_CACHE"
MAX_BYTES_ENV = "DIGIT_RECOGNIZER_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 1 << 30
MAGIC = b"digit-recognizer parse cache 1\n"
# Only what the kit made is ever deleted (DIGIT_RECOGNIZER_CACHE may name a folder of the user's own
# files): an entry has a name only entry_name makes and, owned by this user, starts with MAGIC (an
# older kit's .npy entry: numpy's own header); a temporary file has the name write_entry gives it,
# with the pid of the process writing it.
ENTRY_NAME = re.compile(r"[0-9a-f]{16}-[0-9a-f]{12}\.(entry|npy)")
TEMP_NAME = re.compile(r"\.[0-9a-f]{16}-[0-9a-f]{12}\.entry\.(\d+)-[0-9a-f]{6}\.tmp")
NPY_MAGIC = b"\x93NUMPY"
STALE_TEMP_SECONDS = 60
_warned: list[str] = []  # at most one warning line per process


def cache_dir() -> Path:
    """$DIGIT_RECOGNIZER_CACHE, else ~/.cache/digit-recognizer, else (no usable home) a private temp folder."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    home = os.environ.get("HOME")
    if home is None:
        try:
            import pwd
            home = pwd.getpwuid(os.getuid()).pw_dir
        except (ImportError, KeyError):
            home = ""
    if os.path.isabs(home) and Path(home).resolve() != Path("/") and os.path.isdir(home):
        return Path(home) / ".cache" / "digit-recognizer"
    # No usable home (HOME unset or "", or "/"): never under / or the current folder.
    return Path(tempfile.gettempdir()) / f"digit-recognizer-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"


def usable_cache_dir() -> Path | None:
    """cache_dir(), or None for a shared temp folder's entry that another user could have planted."""
    folder = cache_dir()
    if folder.parent != Path(tempfile.gettempdir()) or not hasattr(os, "getuid"):
        return folder
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    mine = info.st_uid == os.getuid() and not info.st_mode & 0o022 and folder.is_dir() and not folder.is_symlink()
    return folder if mine else None


def max_bytes() -> int:
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        warn(f"{MAX_BYTES_ENV}={text!r}: not a whole number of bytes; using the default, {DEFAULT_MAX_BYTES}")
        return DEFAULT_MAX_BYTES
    return value


def warn(message: str) -> None:
    if not _warned:
        _warned.append(message)
        print(f"digit-recognizer: warning: {message}", file=sys.stderr)


def cached_table(path: Path, columns: list[str], parse) -> "np.ndarray":
    """parse(path, raw) -> array, reusing a cached parse only when it provably is the parse of these bytes.

    The key is the file's size and the SHA-256 of its bytes, read once and handed to the parser, so
    the entry always describes exactly what was parsed: no file-system clock (1-second or 2-second
    timestamps, a jiffy-coarse ctime, a network mount's own clock) can make it stale.
    """
    from .csv_bytes import read_raw

    raw = read_raw(path)  # a missing, unreadable or non-regular file is one UserError line here
    key = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    try:
        folder = usable_cache_dir()
        entry = folder / entry_name(path, len(columns), key) if folder else None
    except (OSError, RuntimeError, ValueError):  # e.g. a symlink loop, no temp folder: just parse
        entry = None
    if entry is not None:
        values = read_entry(entry, key, len(columns))
        if values is not None:
            return values
    values = parse(path, raw)
    if entry is not None:
        write_entry(entry, values, key, path)
    return values


def entry_name(path: Path, n_columns: int, key: dict) -> str:
    # <which file>-<which version of it>: a new version replaces the old entry instead of piling up.
    which = hashlib.sha256(os.fsencode(path.resolve()) + f"|{n_columns}".encode()).hexdigest()[:16]
    version = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"{which}-{version}.entry"


def read_entry(entry: Path, key: dict, n_columns: int) -> "np.ndarray | None":
    """The cached array, or None when anything about the entry is not exactly as written for this file."""
    try:
        with open(entry, "rb") as handle:
            header = read_header(handle)
            if header is None or header.get("key") != key or header.get("dtype") != "uint8":
                return None
            rows, columns = header["shape"]
            if columns != n_columns or rows <= 0:
                return None
            data = bytearray(rows * columns)  # a bytearray: the array is writable, like a parsed one
            if handle.readinto(data) != len(data) or handle.read(1):
                return None
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    if hashlib.sha256(data).hexdigest() != header.get("sha256"):
        entry.unlink(missing_ok=True)  # damaged: parse again and rewrite it
        return None
    try:
        os.utime(entry)  # least recently used goes first when the cache is full
    except OSError:
        pass
    import numpy as np

    return np.frombuffer(data, dtype=np.uint8).reshape(rows, columns)


def read_header(handle) -> dict | None:
    if handle.read(len(MAGIC)) != MAGIC:
        return None
    header = json.loads(handle.readline(1 << 16))
    return header if isinstance(header, dict) else None


def write_entry(entry: Path, values: "np.ndarray", key: dict, source: Path) -> None:
    """Best effort, never leaving a temporary file: a cache that cannot be written only costs speed."""
    import numpy as np

    values = np.ascontiguousarray(values)
    if values.dtype != np.uint8 or values.ndim != 2:
        return
    header = json.dumps({"source": str(source.resolve()), "key": key, "dtype": "uint8", "shape": list(values.shape),
                         "sha256": hashlib.sha256(values).hexdigest()}).encode() + b"\n"
    limit = max_bytes()
    if len(MAGIC) + len(header) + values.nbytes > limit:
        return  # larger than the whole cache may be
    temp = entry.with_name(f".{entry.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        sweep_temp_files(entry.parent)
        with open(temp, "wb") as handle:
            handle.write(MAGIC + header)
            handle.write(values.data)
        os.replace(temp, entry)
        for older, _ in entries(entry.parent):
            if older != entry and older.name.split("-")[0] == entry.name.split("-")[0]:
                older.unlink(missing_ok=True)  # an earlier version of the same file
        enforce_cap(entry.parent, limit)
    except OSError as exc:
        warn(f"parse cache {entry.parent}: cannot write it ({exc.strerror or exc}); continuing without it")
    finally:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass


def entries(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """The cache's entries (only files the kit made), least recently used first."""
    found = []
    try:
        names = [path for path in folder.iterdir() if ENTRY_NAME.fullmatch(path.name)]
    except OSError:
        return []
    for path in names:
        try:
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and _mine(info) and _starts_as_an_entry(path):
                found.append((path, info))
        except OSError:
            pass
    return sorted(found, key=lambda item: item[1].st_mtime_ns)


def _mine(info: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()


def _starts_as_an_entry(path: Path) -> bool:
    with open(path, "rb") as handle:
        start = handle.read(len(MAGIC))
    return start == MAGIC if path.suffix == ".entry" else start.startswith(NPY_MAGIC)


def enforce_cap(folder: Path, limit: int) -> None:
    """Drop the least recently used entries until the total is at most `limit` bytes."""
    found = entries(folder)
    total = sum(info.st_size for _, info in found)
    for path, info in found:
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= info.st_size


def sweep_temp_files(folder: Path, min_age: float = STALE_TEMP_SECONDS) -> None:
    """Remove the temporary files that killed runs left: the kit's own names, this user's, their
    writer's pid gone, and older than `min_age` (a writer in another pid namespace looks gone too)."""
    now = time.time()
    try:
        temps = [(path, TEMP_NAME.fullmatch(path.name)) for path in folder.iterdir()]
    except OSError:
        return
    for temp, named in temps:
        try:
            info = temp.lstat()
            if named and stat.S_ISREG(info.st_mode) and _mine(info) and now - info.st_mtime >= min_age \
                    and not _alive(int(named.group(1))):
                temp.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # alive, another user's
    return True


def describe_entry(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            header = read_header(handle)
        rows, columns = header["shape"]
        return f"{header['source']} ({rows} rows x {columns} columns)"
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return "(an older kit's or unreadable entry)"


def cmd_cache(args: argparse.Namespace) -> int:
    folder = cache_dir()
    found = entries(folder)
    total = sum(info.st_size for _, info in found)
    if args.clear:
        for path, _ in found:
            path.unlink(missing_ok=True)
        sweep_temp_files(folder, min_age=0)
        others = len(list(folder.iterdir())) if folder.is_dir() else 0
        kept = f"; {others} other file(s) there were not made by the kit and are left alone" if others else ""
        print(f"removed {len(found)} entr{'y' if len(found) == 1 else 'ies'} ({megabytes(total)}) from {folder}{kept}")
        return 0
    for path, info in reversed(found):  # most recently used first
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.st_mtime))
        print(f"{megabytes(info.st_size):>9}  {used}  {describe_entry(path)}")
    print(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}, {megabytes(total)} of at most "
          f"{megabytes(max_bytes())} ({MAX_BYTES_ENV}) in {folder}")
    return 0


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cache_flags(cache: argparse.ArgumentParser) -> None:
    cache.add_argument("--clear", action="store_true", help="remove every entry")
    cache.set_defaults(handler=cmd_cache)
