"""A stratified, seeded hold-out split."""
from collections import Counter

import numpy as np

from .checks import folds_problem, holdout_problem
from .errors import UserError


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): each digit contributes round(val_fraction * its count) to validation."""
    problem = holdout_problem(Counter(labels.tolist()), val_fraction)  # the rule Config.check applies
    if problem:
        raise UserError(problem)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        n_val = int(round(val_fraction * len(members)))
        members = rng.permutation(members)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each example: each digit's examples, shuffled, dealt round the folds."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    problem = folds_problem(Counter(labels.tolist()), folds)  # the rule Config.check applies
    if problem:
        raise UserError(problem)
    start = 0
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        # Continue the deal where the previous digit stopped, so the folds' sizes differ by at most one.
        fold_of[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return fold_of
