"""The parse cache: parsed CSVs kept as .npy files, so a second run on the same data skips parsing."""
import hashlib
import os
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    return Path(os.environ.get("DIGIT_RECOGNIZER_CACHE") or Path.home() / ".cache" / "digit-recognizer")


def cached_table(path: Path, columns: list[str], parse) -> np.ndarray:
    """parse(path) -> array, reusing a cached parse when the file's size and modification time match."""
    cached = _cache_path(path, columns)
    if cached is not None and cached.is_file():
        values = _read_cache(cached, len(columns))
        if values is not None:
            return values
    values = parse(path)
    if cached is not None:
        _write_cache(cached, values)
    return values


def _cache_path(path: Path, columns: list[str]) -> Path | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    # <which file>-<which version of it>: a new version replaces the old entry instead of piling up.
    which = hashlib.sha256(f"{path.resolve()}|{len(columns)}".encode()).hexdigest()[:16]
    version = hashlib.sha256(f"{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / f"{which}-{version}.npy"


def _read_cache(cached: Path, n_columns: int) -> np.ndarray | None:
    """The cached array, or None when the cache file is unreadable or not what it should be."""
    try:
        values = np.load(cached, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if values.dtype != np.uint8 or values.ndim != 2 or values.shape[1] != n_columns or values.shape[0] == 0:
        return None
    return values


def _write_cache(cached: Path, values: np.ndarray) -> None:
    """Best effort: a cache that cannot be written (read-only home, full disk) only costs speed."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        with open(temp, "wb") as handle:
            np.save(handle, values)
        os.replace(temp, cached)
        for stale in cached.parent.glob(cached.name.split("-")[0] + "-*.npy"):
            if stale != cached:
                stale.unlink(missing_ok=True)
    except OSError:
        pass
