"""Kaggle's submission format: `ImageId,Label`, ImageId 1..N in test order, Label 0-9."""
from pathlib import Path

import numpy as np

from .fileio import write_text

HEADER = "ImageId,Label"


def submission_text(labels: np.ndarray) -> str:
    ids = np.arange(1, len(labels) + 1)
    return HEADER + "\n" + "".join(f"{i},{label}\n" for i, label in zip(ids.tolist(), labels.tolist()))


def write_submission(path: Path, labels: np.ndarray) -> None:
    write_text(path, submission_text(labels))
