"""Loading data on the user's machine: the embedded sample, Kaggle's zip, and cached parses.

The kernel reads Kaggle's plain CSVs with core/data.py alone; what is here only runs locally.
"""
import zipfile
from pathlib import Path

import numpy as np

from .cache import cached_table
from .core.csvtable import MAX_CSV_BYTES, TEST_COLUMNS, TRAIN_COLUMNS, gunzip, parse_table, read_bytes
from .core.data import PIXEL_LIMITS, TRAIN_LIMITS, DigitData, checked, find_csv, load_folder
from .core.errors import UserError
from .csv_diagnosis import diagnose
from .runs import SAMPLE_SOURCE

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
KAGGLE_FILES = ("train.csv", "test.csv", "train.csv.gz", "test.csv.gz")


def load_data(data: Path | None, cache: bool = True) -> DigitData:
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


def table_reader(cache: bool):
    """read_table(path, columns, limits) for core/data.py: exact diagnosis of bad files, and the cache."""
    def parse(path: Path, columns: list[str], limits: dict[str, int], raw: bytes | None = None) -> np.ndarray:
        if raw is None:  # uncached: pandas reads a plain file itself, a little faster than from bytes
            plain = path if path.suffix != ".gz" else None
            return parse_table(str(path), read_bytes(path), columns, limits, path=plain, diagnose=diagnose)
        # The bytes the cache hashed: parsing exactly them keeps the entry true to its key.
        data = gunzip(str(path), raw) if path.suffix == ".gz" else raw
        return parse_table(str(path), data, columns, limits, diagnose=diagnose)

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
