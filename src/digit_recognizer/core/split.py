"""A stratified, seeded hold-out split."""
import numpy as np

from .errors import UserError


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): each digit contributes round(val_fraction * its count) to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        n_val = int(round(val_fraction * len(members)))
        if n_val == 0 or n_val == len(members):
            side = "validation" if n_val == 0 else "training"
            raise UserError(f"--val-fraction {val_fraction} leaves digit {digit} ({len(members)} examples in "
                            f"train.csv) with no {side} example; use a larger train.csv or another fraction")
        members = rng.permutation(members)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each example: each digit's examples, shuffled, dealt round the folds in turn."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    counts = np.bincount(labels.astype(np.int64), minlength=10)
    if counts.min() < folds:
        digit = int(counts.argmin())
        raise UserError(f"--folds {folds}: digit {digit} has only {counts[digit]} examples in train.csv, so some "
                        f"fold would hold none; use fewer folds or a larger train.csv")
    start = 0
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        # Continue the deal where the previous digit stopped, so the folds' sizes differ by at most one.
        fold_of[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return fold_of
