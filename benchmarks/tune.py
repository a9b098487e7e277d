"""Evidence for the default config: the feature ladder and one-at-a-time changes, 5-fold CV on the embedded sample.

Each row runs `--folds 5` (stratified, seed 0; the same folds for every row) on the sample's
train.csv (4,000 digits) and reports the mean held-out accuracy across folds ± its standard error,
the paired difference from the defaults' row ± its standard error (the same folds, so most of the
fold-to-fold spread cancels: this is the column that says whether a change helps), and the accuracy
of the run's one model on the sample's test.csv (1,000 digits never used to choose anything),
scored with its solution.csv. The first rows climb the feature ladder under the old recipe (10
epochs of Adam) and at the optimum (L-BFGS); "deskew, adam, wd 0.001" is the kit's default before
the ladder.

With --kaggle-size, a last table times one hold-out fit per rung (the default optimiser, one model
on 37,800 images) on Kaggle-size stand-in data, features included.

    python benchmarks/tune.py [--kaggle-size]      # several minutes on 2 CPU cores
"""
import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

# Before torch loads, as in the kit's own commands: its OpenMP threads then sleep instead of spinning.
import digit_recognizer.core.config  # noqa: F401,E402
import numpy as np
import torch

from digit_recognizer.core.config import FEATURE_RUNGS, Config
from digit_recognizer.core.cv import cross_validate
from digit_recognizer.core.features import image_features
from digit_recognizer.core.split import stratified_split
from digit_recognizer.core.train import fit, predict
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.scale import write_kaggle_size
from digit_recognizer.submission_check import read_submission

ADAM = {"optimizer": "adam", "weight_decay": 1e-3}
VARIANTS = [
    {},
    *({"features": rung, **ADAM} for rung in FEATURE_RUNGS),
    *({"features": rung} for rung in FEATURE_RUNGS[:-1]),
    {"weight_decay": 1e-3}, {"weight_decay": 1e-2}, {"weight_decay": 3e-2},
    {"weight_decay": "auto"},
    {"optimizer": "adam", "weight_decay": 1e-3, "epochs": 30},
    {"optimizer": "sgd", "lr": 0.03, "weight_decay": 1e-3},
]


def evaluate(changes: dict, folds: int, seed: int) -> dict:
    data = load_data(None)
    truth = read_submission(SAMPLE_DIR / "solution.csv.gz", None)
    cfg = dataclasses.replace(Config(), folds=folds, seed=seed, **changes)
    timings = {}
    result = cross_validate(cfg, torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels), timings)
    test = float((predict(result["model"], torch.from_numpy(data.test_images)).argmax(1).numpy() == truth).mean())
    return {**result["cv"], "test_accuracy": test, "seconds": timings["fit"]}


def ladder_table(folds: int, seed: int) -> None:
    print(f"defaults: {dataclasses.asdict(Config())}; {folds}-fold CV, seed {seed}")
    print("| change from the defaults | CV accuracy ± SE | difference from defaults ± SE | weight decay | "
          "sample test accuracy | fit s (5 folds) |")
    print("|---|---|---|---|---|---|")
    base = None
    for changes in VARIANTS:
        row = evaluate(changes, folds, seed)
        accuracies = np.array(row["fold_accuracies"])
        base = accuracies if base is None else base
        diff = accuracies - base
        diff_se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        name = ", ".join(f"{k}={v}" for k, v in changes.items()) or "(defaults)"
        print(f"| {name} | {row['accuracy']:.4f} ± {row['stderr']:.4f} | {diff.mean():+.4f} ± {diff_se:.4f} | "
              f"{row['weight_decay']:g} | {row['test_accuracy']:.4f} | {row['seconds']:.1f} |", flush=True)


def kaggle_size_times(seed: int) -> None:
    """One hold-out fit per rung on 42,000 stand-in images: what `train` spends fitting at Kaggle size."""
    with tempfile.TemporaryDirectory() as folder:
        data = load_data(write_kaggle_size(Path(folder)))
    train_idx, val_idx = stratified_split(data.train_labels, Config.val_fraction, seed)
    pixels, labels = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
    print(f"\nhold-out fit at Kaggle size ({len(train_idx)} training images), {torch.get_num_threads()} threads")
    print("| features | optimizer | features + fit s |")
    print("|---|---|---|")
    for rung in FEATURE_RUNGS:
        for changes in ({}, ADAM):
            cfg = dataclasses.replace(Config(), features=rung, seed=seed, **changes)
            started = time.perf_counter()
            fit(cfg, image_features(pixels, rung), labels, [(train_idx, val_idx)])
            print(f"| {rung} | {cfg.optimizer} | {time.perf_counter() - started:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kaggle-size", action="store_true", help="also time one fit per rung at Kaggle size")
    args = parser.parse_args()
    ladder_table(args.folds, args.seed)
    if args.kaggle_size:
        kaggle_size_times(args.seed)


if __name__ == "__main__":
    main()
