"""Loading data on the user's machine: the embedded sample, Kaggle's zip, and cached parses.

The kernel reads Kaggle's plain CSVs with its own read_csv; what is here only runs locally: the bytes of
each CSV are checked first (csv_bytes.py), so that a bad file is named down to its line and column. The
commands that talk to Kaggle read zips here too, so the kernel (and torch) is imported only by the
functions that hand training its data.
"""
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cache import cached_table
from .errors import UserError
from .csv_bytes import (MAX_CSV_BYTES, PIXEL_LIMITS, TEST_COLUMNS, TRAIN_COLUMNS, TRAIN_LIMITS, gunzip, parse_table,
                        read_bytes)
from .csv_diagnosis import diagnose
from .run_record import SAMPLE_SOURCE

if TYPE_CHECKING:
    from .kernel import DigitData

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
KAGGLE_FILES = ("train.csv", "test.csv", "train.csv.gz", "test.csv.gz")


def find_kaggle_input() -> Path | None:
    """The competition data under /kaggle/input, found as the kernel finds it; None where there is none."""
    from . import kernel

    try:
        return kernel.find_data()
    except kernel.UserError:
        return None


def load_data(data: Path | None, cache: bool = True) -> "DigitData":
    """Load --data (a folder, Kaggle's zip, or the embedded sample when None)."""
    if data is None:
        sample = load_folder(SAMPLE_DIR, table_reader(cache=False))
        sample.source = SAMPLE_SOURCE
        return sample
    if data.is_file() and data.suffix == ".zip":
        files = read_zip(data, ("train.csv", "test.csv"))
        train, test = (parse_table(f"{data}:{name}", files[name], columns, limits, diagnose=diagnose)
                       for name, columns, limits in (("train.csv", TRAIN_COLUMNS, TRAIN_LIMITS),
                                                     ("test.csv", TEST_COLUMNS, PIXEL_LIMITS)))
        return checked(str(data), f"{data}:train.csv", train, test)
    if data.is_file() and data.name in KAGGLE_FILES:
        data = data.parent  # `--data input/train.csv` means the folder it is in
    if data.is_file():
        raise UserError(f"{data}: --data takes the folder holding train.csv and test.csv "
                        f"(or Kaggle's digit-recognizer.zip), not a single file; name it train.csv or test.csv "
                        f"in a folder beside the other and pass that folder")
    if not data.is_dir():
        raise UserError(f"{data}: no such {'file' if data.suffix == '.zip' else 'folder'}; "
                        f"--data takes the folder holding train.csv and test.csv (or Kaggle's digit-recognizer.zip)")
    return load_folder(data, table_reader(cache))


def load_test_images(data: Path | None, cache: bool = True) -> np.ndarray:
    """Only test.csv's images, for predicting with a saved model: a folder need not hold train.csv."""
    if data is not None and data.is_dir():
        return table_reader(cache)(find_csv(data, "test"), TEST_COLUMNS, PIXEL_LIMITS)
    return load_data(data, cache).test_images


def load_folder(folder: Path, read_table) -> "DigitData":
    """Load the folder holding train.csv and test.csv (or their .gz) with read_table(path, columns, limits)."""
    train_path, test_path = find_csv(folder, "train"), find_csv(folder, "test")
    train = read_table(train_path, TRAIN_COLUMNS, TRAIN_LIMITS)
    return checked(str(folder), str(train_path), train, read_table(test_path, TEST_COLUMNS, PIXEL_LIMITS))


def find_csv(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        # A folder, FIFO or broken link of that name: read_bytes says which.
        if os.path.lexists(folder / name):
            return folder / name
    zipped = folder / "digit-recognizer.zip"
    hint = f" (unzip {zipped} there, or pass the zip itself as --data)" if zipped.is_file() else ""
    raise UserError(f"{folder / (stem + '.csv')}: no such file; the folder needs train.csv and "
                    f"test.csv{hint}")


def checked(source: str, train_name: str, train: np.ndarray, test: np.ndarray) -> "DigitData":
    """The data, once train.csv is known to hold every digit (the kernel leaves that to the split's check,
    which says a digit has 0 examples; here the file is named)."""
    from .kernel import DigitData

    labels = train[:, 0]
    absent = sorted(set(range(10)) - set(np.unique(labels).tolist()))
    if absent:
        raise UserError(f"{train_name}: no examples of digit{'s' if len(absent) > 1 else ''} "
                        f"{', '.join(map(str, absent))}; training needs all ten digits 0-9")
    return DigitData(source, np.ascontiguousarray(train[:, 1:]), labels.copy(), test)


def table_reader(cache: bool):
    """read_table(path, columns, limits) for load_folder: exact diagnosis of bad files, and the cache."""
    def parse(path: Path, columns: list[str], limits: dict[str, int], raw: bytes | None = None) -> np.ndarray:
        if raw is None:
            raw = read_bytes(path)
        elif path.suffix == ".gz":  # the bytes the cache hashed: parsing exactly them keeps the entry true
            raw = gunzip(str(path), raw)
        return parse_table(str(path), raw, columns, limits, diagnose=diagnose)

    if not cache:
        return parse
    return lambda path, columns, limits: cached_table(path, columns, lambda p, raw: parse(p, columns, limits, raw))


def read_zip(path: Path, names: tuple[str, ...], required: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """The bytes of each named file the zip holds (found in any folder inside it).

    Every name in `required` (default: all of `names`) must be there, else one UserError says which are
    not; a name held twice (at different depths) is refused, naming both, rather than one picked; each
    entry is read at most MAX_CSV_BYTES far, so a zip bomb is refused instead of filling memory.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members: dict[str, str] = {}
            for member in archive.namelist():
                name = Path(member).name
                if name in names and not member.endswith("/"):
                    if name in members:
                        raise UserError(f"{path}: the zip holds two {name}, '{members[name]}' and '{member}'; "
                                        f"expected one, so which to use is not guessed: make a zip with one")
                    members[name] = member
            missing = [m for m in (names if required is None else required) if m not in members]
            if missing:
                raise UserError(f"{path}: the zip holds no {' or '.join(missing)}")
            return {name: _read_member(path, archive, member) for name, member in members.items()}
    except zipfile.BadZipFile:
        raise UserError(f"{path}: not a readable zip file") from None
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise UserError(f"{path}: cannot be read as a zip ({exc})") from None


def _read_member(path: Path, archive: zipfile.ZipFile, member: str) -> bytes:
    with archive.open(member) as handle:
        data = handle.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise UserError(f"{path}: '{member}' unpacks to more than {MAX_CSV_BYTES >> 20} MiB, far beyond Kaggle's "
                        f"largest file (train.csv, 77 MB); expected Kaggle's zip")
    return data
