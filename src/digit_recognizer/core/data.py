"""Where the data is, and loading it as uint8 arrays (with a cache of parsed arrays)."""
import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .csvtable import PIXELS, TEST_COLUMNS, TRAIN_COLUMNS, parse_table, read_bytes
from .errors import UserError

# globals(): inlined into the Kaggle kernel and run as a notebook cell, there is no __file__ (nor a sample).
SAMPLE_DIR = Path(globals().get("__file__", ".")).resolve().parent.parent / "sample"
KAGGLE_INPUT = Path("/kaggle/input")
PIXEL_LIMITS = {name: 255 for name in PIXELS}
TRAIN_LIMITS = {"label": 9, **PIXEL_LIMITS}
KAGGLE_FILES = ("train.csv", "test.csv", "train.csv.gz", "test.csv.gz")


@dataclass
class DigitData:
    """Kaggle's two tables: labelled training images and unlabelled test images, as uint8."""
    source: str
    train_images: np.ndarray  # (n, 784) uint8
    train_labels: np.ndarray  # (n,) uint8
    test_images: np.ndarray   # (m, 784) uint8


def find_kaggle_input(root: Path = KAGGLE_INPUT) -> Path | None:
    """The folder under /kaggle/input holding both train.csv and test.csv, wherever it is mounted."""
    if not root.is_dir():
        return None
    for train in sorted(root.rglob("train.csv")):
        if (train.parent / "test.csv").is_file():
            return train.parent
    return None


def load_data(data: Path | None, cache: bool = True) -> DigitData:
    """Load --data (a folder, Kaggle's zip, or the embedded sample when None)."""
    if data is None:
        return _load_pair("embedded sample", SAMPLE_DIR / "train.csv.gz", SAMPLE_DIR / "test.csv.gz", cache=False)
    if data.is_file() and data.suffix == ".zip":
        return _load_zip(data)
    if data.is_file() and data.name in KAGGLE_FILES:
        data = data.parent  # `--data input/train.csv` means the folder it is in
    if data.is_file():
        raise UserError(f"{data}: --data takes the folder holding train.csv and test.csv "
                        f"(or Kaggle's digit-recognizer.zip), not a single file; name it train.csv or test.csv "
                        f"in a folder beside the other and pass that folder")
    if not data.is_dir():
        raise UserError(f"{data}: no such {'file' if data.suffix == '.zip' else 'folder'}; "
                        f"--data takes the folder holding train.csv and test.csv (or Kaggle's digit-recognizer.zip)")
    return _load_pair(str(data), _find_csv(data, "train"), _find_csv(data, "test"), cache)


def load_test_images(data: Path | None, cache: bool = True) -> np.ndarray:
    """Only test.csv's images, for predicting with a saved model: a folder need not hold train.csv."""
    if data is not None and data.is_dir():
        return load_table(_find_csv(data, "test"), TEST_COLUMNS, PIXEL_LIMITS, cache)
    return load_data(data, cache).test_images


def _find_csv(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (folder / name).is_file():
            return folder / name
    zipped = folder / "digit-recognizer.zip"
    hint = f" (unzip {zipped} there, or pass the zip itself as --data)" if zipped.is_file() else ""
    raise UserError(f"{folder / (stem + '.csv')}: no such file; the folder needs train.csv and test.csv{hint}")


def _load_pair(source: str, train_path: Path, test_path: Path, cache: bool) -> DigitData:
    train = load_table(train_path, TRAIN_COLUMNS, TRAIN_LIMITS, cache)
    test = load_table(test_path, TEST_COLUMNS, PIXEL_LIMITS, cache)
    return _checked(source, str(train_path), train, test)


def _load_zip(path: Path) -> DigitData:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).name: n for n in archive.namelist()}
            missing = [m for m in ("train.csv", "test.csv") if m not in members]
            if missing:
                raise UserError(f"{path}: the zip holds no {' or '.join(missing)}")
            tables = [parse_table(f"{path}:{m}", archive.read(members[m]), cols, limits)
                      for m, cols, limits in (("train.csv", TRAIN_COLUMNS, TRAIN_LIMITS),
                                              ("test.csv", TEST_COLUMNS, PIXEL_LIMITS))]
    except zipfile.BadZipFile:
        raise UserError(f"{path}: not a readable zip file") from None
    return _checked(str(path), f"{path}:train.csv", *tables)


def _checked(source: str, train_name: str, train: np.ndarray, test: np.ndarray) -> DigitData:
    labels = train[:, 0]
    absent = sorted(set(range(10)) - set(np.unique(labels).tolist()))
    if absent:
        raise UserError(f"{train_name}: no examples of digit{'s' if len(absent) > 1 else ''} "
                        f"{', '.join(map(str, absent))}; training needs all ten digits 0-9")
    return DigitData(source, np.ascontiguousarray(train[:, 1:]), labels.copy(), test)


def load_table(path: Path, columns: list[str], limits: dict[str, int], cache: bool = True) -> np.ndarray:
    """Parse one CSV, reusing a cached parse when the file's size and modification time match."""
    cached = _cache_path(path, columns) if cache else None
    if cached is not None and cached.is_file():
        values = _read_cache(cached, len(columns))
        if values is not None:
            return values
    plain = path if path.suffix != ".gz" else None
    values = parse_table(str(path), read_bytes(path), columns, limits, path=plain)
    if cached is not None:
        _write_cache(cached, values)
    return values


def cache_dir() -> Path:
    return Path(os.environ.get("DIGIT_RECOGNIZER_CACHE") or Path.home() / ".cache" / "digit-recognizer")


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
