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
