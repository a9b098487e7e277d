"""Kaggle-size data made from the embedded sample, for trying the kit at full scale offline.

Kaggle's train.csv has 42,000 rows and test.csv 28,000. Shifted copies of the sample's real digits
(one or two pixels in each direction) reach those sizes without any download.
"""
from pathlib import Path

import numpy as np

from .csv_bytes import TEST_COLUMNS, TRAIN_COLUMNS
from .local_data import load_data
from .local_io import atomic_write

SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1), (2, 0), (0, 2), (-2, 0), (0, -2)]


def shifted_copies(images: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_rows, 784) images cycling through SHIFTS of `images`, and the source row of each."""
    rows = np.arange(n_rows) % len(images)
    shift = np.arange(n_rows) // len(images) % len(SHIFTS)
    out = np.empty((n_rows, 28, 28), dtype=np.uint8)
    squares = images.reshape(-1, 28, 28)
    for k, (dy, dx) in enumerate(SHIFTS):
        chosen = shift == k
        out[chosen] = np.roll(squares[rows[chosen]], (dy, dx), axis=(1, 2))
    return out.reshape(n_rows, 784), rows


def write_kaggle_size(folder: Path, n_train: int = 42000, n_test: int = 28000) -> Path:
    """Write train.csv and test.csv of Kaggle's sizes into `folder`; return the folder."""
    sample = load_data(None)
    train, rows = shifted_copies(sample.train_images, n_train)
    test, _ = shifted_copies(sample.test_images, n_test)
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "train.csv", TRAIN_COLUMNS, np.column_stack([sample.train_labels[rows], train]))
    _write_csv(folder / "test.csv", TEST_COLUMNS, test)
    return folder


def _write_csv(path: Path, columns: list[str], table: np.ndarray) -> None:
    def write(temp: Path) -> None:
        with open(temp, "w", encoding="ascii", newline="\n") as handle:
            handle.write(",".join(columns) + "\n")
            np.savetxt(handle, table, fmt="%d", delimiter=",")
    atomic_write(path, write)
