"""Seeded, stratified validation: one hold-out split, or K folds.

Stratified, so that each digit is held out in its own proportion: a skewed split would score a
skewed mix of digits. (Config.check has asked first whether the labels allow the split.)
"""
import numpy as np


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): each digit contributes round(val_fraction * its count) to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_val = int(round(val_fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) indices of each fold: each digit's examples, shuffled, dealt round the folds."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    start = 0
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        # Continue the deal where the previous digit stopped, so the folds' sizes differ by at most one.
        fold_of[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(folds)]
