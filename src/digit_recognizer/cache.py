"""The parse cache: parsed CSVs kept on disk, so a second run on the same data skips parsing.

It must never change a result, fail a run, or grow without bound:
- an entry is keyed on the file's path, size and the SHA-256 of its bytes (the very bytes then
  parsed; timestamps are not trusted, since many file systems keep them to the second), and is used
  only when those match and its own bytes pass a checksum (with the shape and dtype); on any doubt
  the CSV is parsed again;
- a write goes to a temporary file that is removed whatever happens; temporary files that a killed
  run left are swept after a minute, once their writer is gone;
- only the user's own entries are used: the folder may be shared and writable by others, and an entry
  planted there by another user, with the right name and checksum, would decide what a run trains on;
  such a file is ignored (one warning line), listed by `digit-recognizer cache` with the reason, and
  never replaced or deleted;
- an entry's array is checked as a parse checks a CSV (shape, dtype, labels 0-9) before it is used;
- nothing is deleted that the kit did not make (entries and temporary files are recognised by name,
  owner and contents), since the folder may be one the user named and keeps other files in;
- a cache that cannot be written costs only speed, with at most one warning line;
- the total size is capped (DIGIT_RECOGNIZER_CACHE_MAX_BYTES, default 1 GiB), least recently used
  entries dropped first; `digit-recognizer cache` lists it and `cache --clear` empties it.
"""
import argparse
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported only where an entry's array is checked, read or written
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


@dataclass
class Examined:
    """A file with an entry's name, as the kit sees it: an array it uses, or a reason it ignores the file."""
    path: Path
    size: int
    used: float  # its modification time: when it was last written or used
    values: "np.ndarray | None" = None  # the array, when the kit would use it
    ignored: str | None = None  # why the kit does not use it; None when it does
    own_file: bool = False  # a regular file of the user's: a run may replace it with the parse it makes
    removable: bool = False  # the user's own and the kit's, usable or not: the cap and `cache --clear` count it
    header: dict | None = None  # only for the user's own entries: another user's text is not shown


def examine(path: Path, key: dict | None = None, n_columns: int | None = None) -> Examined | None:
    """What the file at `path` is to the kit (None: nothing there). With `key` and `n_columns`, an entry for
    exactly those bytes and that table; without (for `cache`), any entry the kit could use.

    Every check a use needs is here, so that `cache` lists as ignored exactly what a run would ignore.
    """
    try:
        # O_NOFOLLOW: a symbolic link is nothing the kit wrote; O_NONBLOCK: a FIFO does not hang the open.
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        try:
            info = path.lstat()
        except OSError:
            return None
        reason = "a symbolic link, not a file the kit wrote" if exc.errno == errno.ELOOP or stat.S_ISLNK(info.st_mode) \
            else f"cannot be read ({exc.strerror or exc})"
        return Examined(path, info.st_size, info.st_mtime, ignored=reason)
    with os.fdopen(handle, "rb") as stream:
        info = os.fstat(stream.fileno())
        found = Examined(path, info.st_size, info.st_mtime)
        if not stat.S_ISREG(info.st_mode):
            found.ignored = "not a regular file"
        elif not _mine(info):
            found.ignored = f"another user's file ({owner_name(info.st_uid)}): only your own entries are used"
        else:
            found.own_file = True
            _examine_contents(found, stream, key, n_columns)
    return found


def _examine_contents(found: Examined, stream, key: dict | None, n_columns: int | None) -> None:
    """The checks of the user's own file: the kit's header, the key, the size, the checksum, the values."""
    start = stream.read(len(MAGIC))
    if start != MAGIC:
        if found.path.suffix == ".npy" and start.startswith(NPY_MAGIC):
            found.ignored, found.removable = "an older kit's entry, no longer read", True
        else:
            found.ignored = "not made by the kit (it does not start with the kit's header)"
        return
    found.removable = True
    try:
        header = json.loads(stream.readline(1 << 16))
        rows, columns = header["shape"]
        ok_fields = header.get("dtype") == "uint8" and isinstance(rows, int) and isinstance(columns, int) \
            and rows > 0 and columns > 0 and isinstance(header.get("sha256"), str)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):  # not JSON, or not the kit's fields
        ok_fields = False
    if not ok_fields:
        found.ignored = "damaged: its header cannot be read"
        return
    found.header = header
    if (key is not None and header.get("key") != key) or (n_columns is not None and columns != n_columns):
        found.ignored = "made for other bytes or another table than its name says"
        return
    table = kaggle_table(columns)
    if table is None:
        found.ignored = f"a table of {columns} columns, which no Kaggle CSV has"
        return
    if found.size - stream.tell() != rows * columns:  # checked before memory is set aside for it
        found.ignored = "damaged: not the size its header says"
        return
    data = bytearray(rows * columns)  # a bytearray: the array is writable, like a parsed one
    if stream.readinto(data) != len(data) or stream.read(1):
        found.ignored = "damaged: not the size its header says"
        return
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        found.ignored = "damaged: its checksum does not match its contents"
        return
    import numpy as np

    from .csv_bytes import beyond_limits

    values = np.frombuffer(data, dtype=np.uint8).reshape(rows, columns)
    problem = beyond_limits(values, *table)
    if problem:
        found.ignored = f"holds {problem}, which no parse of a Kaggle CSV gives"
        return
    found.values = values


def kaggle_table(n_columns: int) -> tuple[list[str], dict[str, int]] | None:
    """The columns and each column's largest value of the Kaggle table with that many columns (train.csv
    or test.csv): what a parse allows, and so what a cached array must keep to."""
    from .csv_bytes import PIXEL_LIMITS, TEST_COLUMNS, TRAIN_COLUMNS, TRAIN_LIMITS

    tables = {len(TRAIN_COLUMNS): (TRAIN_COLUMNS, TRAIN_LIMITS), len(TEST_COLUMNS): (TEST_COLUMNS, PIXEL_LIMITS)}
    return tables.get(n_columns)


def owner_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    except (ImportError, KeyError):
        return f"uid {uid}"


def entry_name(path: Path, n_columns: int, key: dict) -> str:
    # <which file>-<which version of it>: a new version replaces the old entry instead of piling up.
    which = hashlib.sha256(os.fsencode(path.resolve()) + f"|{n_columns}".encode()).hexdigest()[:16]
    version = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"{which}-{version}.entry"


def read_entry(entry: Path, key: dict, n_columns: int) -> "np.ndarray | None":
    """The cached array, or None when anything about the entry is not exactly as written for this file
    by this user and as a parse would give it. The user's own damaged entry is removed (or, not even
    starting as an entry, replaced), so that the parse's result takes its place; another user's file, or
    what is not a file, is left where it is, and said once."""
    found = examine(entry, key, n_columns)
    if found is None:
        return None
    if found.values is None:
        if found.removable:
            entry.unlink(missing_ok=True)  # damaged: parse again and rewrite it
        elif not found.own_file:
            warn(f"parse cache {entry.parent}: ignoring {entry.name}, {found.ignored}; the CSV was parsed instead "
                 f"(`digit-recognizer cache` lists what the cache holds)")
        return None
    try:
        os.utime(entry)  # least recently used goes first when the cache is full
    except OSError:
        pass
    return found.values


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
    if os.path.lexists(entry) and not _the_users_file(entry):
        return  # another user's file, or not a file: never replaced (read_entry said so)
    temp = entry.with_name(f".{entry.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        sweep_temp_files(entry.parent)
        # "x": a new file only, so that a link planted at the temporary name (a shared folder) is not followed.
        with open(temp, "xb") as handle:
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
            info = temp.lstat()
            if stat.S_ISREG(info.st_mode) and _mine(info):  # not a file someone else put at that name first
                temp.unlink()
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
            if _the_users_entry(path, info):
                found.append((path, info))
        except OSError:
            pass
    return sorted(found, key=lambda item: item[1].st_mtime_ns)


def _the_users_file(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and _mine(info)


def _the_users_entry(path: Path, info: os.stat_result | None = None) -> bool:
    """A regular file of this user's that starts as the kit's entries do: the kit may replace or delete it."""
    try:
        info = info or path.lstat()
        return stat.S_ISREG(info.st_mode) and _mine(info) and _starts_as_an_entry(path)
    except OSError:
        return False


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


def describe_header(header: dict) -> str:
    rows, columns = header["shape"]
    return f"{header['source']} ({rows} rows x {columns} columns)"


def every_entry(folder: Path) -> list[Examined]:
    """Every file in the folder with an entry's name, whoever made it and whatever it holds, each examined
    as a run would examine it; most recently used first."""
    try:
        names = [path for path in folder.iterdir() if ENTRY_NAME.fullmatch(path.name)]
    except OSError:
        return []
    found = [examine(path) for path in names]
    return sorted((item for item in found if item is not None), key=lambda item: item.used, reverse=True)


def cmd_cache(args: argparse.Namespace) -> int:
    folder = cache_dir()
    return clear_cache(folder) if args.clear else list_cache(folder)


def list_cache(folder: Path) -> int:
    """One line for every file a run would look at, with the reason for each one it would not use."""
    found = every_entry(folder)
    for item in found:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.used))
        if item.ignored is None:
            what = describe_header(item.header)
        else:  # another user's file is named by its file name only: its contents are not the kit's text
            fate = "`cache --clear` removes it" if item.removable else "`cache --clear` leaves it alone"
            what = f"ignored: {item.path.name}: {item.ignored}; {fate}"
        print(f"{megabytes(item.size):>9}  {used}  {what}")
    usable = [item for item in found if item.ignored is None]
    total = sum(item.size for item in usable)
    ignored = len(found) - len(usable)
    note = f"; {ignored} more file{'' if ignored == 1 else 's'} ignored (listed above)" if ignored else ""
    print(f"{len(usable)} entr{'y' if len(usable) == 1 else 'ies'}, {megabytes(total)} of at most "
          f"{megabytes(max_bytes())} ({MAX_BYTES_ENV}) in {folder}{note}")
    return 0


def clear_cache(folder: Path) -> int:
    """Delete the user's own entries (usable or not) and dead writers' temporary files; nothing else."""
    found = entries(folder)
    total = sum(info.st_size for _, info in found)
    for path, _ in found:
        path.unlink(missing_ok=True)
    sweep_temp_files(folder, min_age=0)
    others = len(list(folder.iterdir())) if folder.is_dir() else 0
    kept = f"; {others} other file(s) there were not made by the kit and are left alone" if others else ""
    theirs = len(every_entry(folder))  # what is left with an entry's name: not the user's, or not the kit's
    if theirs:
        kept += (f" ({theirs} of them named as entries but not yours or not the kit's, so never used; "
                 f"`digit-recognizer cache` says why)")
    print(f"removed {len(found)} entr{'y' if len(found) == 1 else 'ies'} ({megabytes(total)}) from {folder}{kept}")
    return 0


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cache_flags(cache: argparse.ArgumentParser) -> None:
    cache.add_argument("--clear", action="store_true", help="remove every entry")
    cache.set_defaults(handler=cmd_cache)
