"""Kaggle's two CSVs: pandas parses them as uint8, refusing any other value."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

TEST_COLUMNS = [f"pixel{i}" for i in range(784)]
TRAIN_COLUMNS = ["label", *TEST_COLUMNS]


@dataclass
class DigitData:
    """Kaggle's two tables: labelled training images and unlabelled test images, as uint8."""
    source: str
    train_images: np.ndarray  # (n, 784) uint8
    train_labels: np.ndarray  # (n,) uint8
    test_images: np.ndarray   # (m, 784) uint8


def load_folder(folder: Path) -> DigitData:
    train = read_csv(folder / "train.csv", TRAIN_COLUMNS)
    test = read_csv(folder / "test.csv", TEST_COLUMNS)
    return DigitData(str(folder), np.ascontiguousarray(train[:, 1:]), train[:, 0].copy(), test)


def read_csv(path: Path, columns: list[str]) -> np.ndarray:
    """The rows of a CSV whose header is exactly `columns`, as a uint8 array."""
    import pandas as pd  # here, not at the top: the local CLI imports this module for much less
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        table = pd.read_csv(path, skiprows=1, header=None, dtype=np.uint8, engine="c", na_filter=False)
    except (OSError, ValueError, OverflowError) as exc:  # pandas' ParserError is a ValueError
        reason = " ".join(str(exc).split())  # pandas' own words, on one line
        raise UserError(f"{path}: not a Kaggle digit CSV with rows of integers 0-255 ({reason})") from None
    if header != columns or table.shape[1] != len(columns):
        raise UserError(f"{path}: expected exactly the columns {columns[0]},...,{columns[-1]}, in that order")
    if columns[0] == "label" and table[0].max() > 9:
        raise UserError(f"{path}: a label above 9; expected the digits 0-9")
    return np.ascontiguousarray(table.to_numpy())
