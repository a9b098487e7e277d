"""Where Kaggle's data is, and loading its two CSVs as uint8 arrays."""
from dataclasses import dataclass
import os
from pathlib import Path

import numpy as np

from .csvtable import PIXEL_LIMITS, TEST_COLUMNS, TRAIN_COLUMNS, TRAIN_LIMITS, parse_table, read_bytes
from .errors import UserError
from .flags import KAGGLE_INPUT


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


def load_folder(folder: Path, read_table=None) -> DigitData:
    """Load the folder holding train.csv and test.csv (or their .gz).

    `read_table(path, columns, limits)` parses one file; locally it is the cached reader.
    """
    read_table = read_table or load_table
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


def checked(source: str, train_name: str, train: np.ndarray, test: np.ndarray) -> DigitData:
    labels = train[:, 0]
    absent = sorted(set(range(10)) - set(np.unique(labels).tolist()))
    if absent:
        raise UserError(f"{train_name}: no examples of digit{'s' if len(absent) > 1 else ''} "
                        f"{', '.join(map(str, absent))}; training needs all ten digits 0-9")
    return DigitData(source, np.ascontiguousarray(train[:, 1:]), labels.copy(), test)


def load_table(path: Path, columns: list[str], limits: dict[str, int]) -> np.ndarray:
    """Parse one CSV (pandas reads a plain file itself, which is faster than from bytes)."""
    return parse_table(str(path), read_bytes(path), columns, limits,
                       path=path if path.suffix != ".gz" else None)
