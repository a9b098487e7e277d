"""Evidence for the default config: one-at-a-time changes from the defaults, 5-fold CV on the embedded sample.

Each row runs `--folds 5` (stratified, seed 0; the same folds for every row) on the sample's
train.csv (4,000 digits) and reports the mean held-out accuracy across folds ± its standard error,
the paired difference from the defaults' row ± its standard error (the same folds, so most of the
fold-to-fold spread cancels: this is the column that says whether a change helps), and the accuracy
of the run's one model on the sample's test.csv (1,000 digits never used to choose anything),
scored with its solution.csv.

The CV fits run every epoch (no early stopping: the held-out fold must not choose), so --patience
does not apply here; --refit switches the submitted model from the fold models' average to a refit
on all 4,000 digits, so its row compares the two on the test set (its CV columns equal the defaults').

    python benchmarks/tune.py            # a few minutes on 2 CPU cores
"""
import argparse
import dataclasses
import math
import time

import numpy as np
import torch

from digit_recognizer.core.config import Config
from digit_recognizer.core.cv import cross_validate
from digit_recognizer.core.train import predict
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.submission_check import read_submission

VARIANTS = [
    {},
    {"refit": True},
    {"deskew": False},
    {"weight_decay": 0.0}, {"weight_decay": 1e-2}, {"weight_decay": 3e-2},
    {"weight_decay": "auto"},
    {"lr": 1e-3}, {"lr": 1e-2},
    {"epochs": 5}, {"epochs": 20}, {"epochs": 30},
    {"batch_size": 128}, {"batch_size": 512},
    {"schedule": "constant"},
    {"optimizer": "sgd", "lr": 0.03},
    {"epochs": 30, "lr": 1e-2},
    {"epochs": 30, "lr": 1e-2, "weight_decay": 3e-2},
    {"epochs": 30, "lr": 1e-2, "weight_decay": "auto"},
]


def evaluate(changes: dict, folds: int, seed: int) -> dict:
    data = load_data(None)
    truth = read_submission(SAMPLE_DIR / "solution.csv.gz", None)
    cfg = dataclasses.replace(Config(), folds=folds, seed=seed, **changes)
    result = cross_validate(cfg, torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels))
    test = float((predict(result.model, torch.from_numpy(data.test_images)).argmax(1).numpy() == truth).mean())
    return {**result.summary, "test_accuracy": test, "seconds": result.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"defaults: {dataclasses.asdict(Config())}; {args.folds}-fold CV, seed {args.seed}")
    print("| change from the defaults | CV accuracy ± SE | difference from defaults ± SE | weight decay | "
          "sample test accuracy | fit s |")
    print("|---|---|---|---|---|---|")
    base = None
    for changes in VARIANTS:
        started = time.perf_counter()
        row = evaluate(changes, args.folds, args.seed)
        folds = np.array(row["fold_accuracies"])
        base = folds if base is None else base
        diff = folds - base
        diff_se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        name = ", ".join(f"{k}={v}" for k, v in changes.items()) or "(defaults)"
        print(f"| {name} | {row['accuracy']:.4f} ± {row['stderr']:.4f} | {diff.mean():+.4f} ± {diff_se:.4f} | "
              f"{row['weight_decay']:g} | {row['test_accuracy']:.4f} | {time.perf_counter() - started:.2f} |", flush=True)


if __name__ == "__main__":
    main()
