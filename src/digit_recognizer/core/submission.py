"""Kaggle's format: `ImageId,Label`, ImageId 1..N in test order, Label 0-9."""
from pathlib import Path

import numpy as np

from .fileio import atomic_write

HEADER = "ImageId,Label"


def write_submission(path: Path, labels: np.ndarray) -> None:
    rows = "".join(f"{i},{label}\n" for i, label in enumerate(labels.tolist(), 1))
    atomic_write(path, lambda temp: temp.write_text(f"{HEADER}\n{rows}", encoding="utf-8"))
