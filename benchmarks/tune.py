"""Evidence for the default config: one-at-a-time changes from the defaults, on the embedded sample.

Each row trains on the sample's train.csv with three stratified splits (seeds 0, 1, 2) and reports
the mean best validation accuracy (400 held-out images each; what chooses the defaults) and the mean
accuracy on the sample's test.csv scored with its solution.csv (1,000 images never used to choose).

    python benchmarks/tune.py            # about a minute on 2 CPU cores
"""
import argparse
import dataclasses
import time

import numpy as np
import torch

from digit_recognizer.core.config import Config
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.core.split import stratified_split
from digit_recognizer.submission_check import read_submission
from digit_recognizer.core.train import fit, predict

VARIANTS = [
    {},
    {"deskew": False},
    {"weight_decay": 0.0}, {"weight_decay": 1e-2},
    {"patience": 0},
    {"lr": 1e-3}, {"lr": 1e-2},
    {"epochs": 5}, {"epochs": 20},
    {"batch_size": 128}, {"batch_size": 512},
    {"schedule": "constant"},
    {"optimizer": "sgd", "lr": 0.03},
    {"refit": True},
]


def evaluate(changes: dict, seeds: range) -> tuple[float, float, float]:
    data = load_data(None)
    truth = read_submission(SAMPLE_DIR / "solution.csv.gz", None)
    pixels, labels = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
    test = torch.from_numpy(data.test_images)
    val_acc, test_acc, seconds = [], [], []
    for seed in seeds:
        cfg = dataclasses.replace(Config(), seed=seed, **changes)
        train_idx, val_idx = (torch.from_numpy(i) for i in stratified_split(data.train_labels, cfg.val_fraction, seed))
        result = fit(cfg, pixels[train_idx], labels[train_idx], pixels[val_idx], labels[val_idx])
        model = result.model
        if cfg.refit:
            model = fit(cfg, pixels, labels, epochs=result.best_epoch).model
        val_acc.append(max(h["val_accuracy"] for h in result.history))
        test_acc.append(float((predict(model, test).argmax(1).numpy() == truth).mean()))
        seconds.append(result.seconds)
    return float(np.mean(val_acc)), float(np.mean(test_acc)), float(np.mean(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"defaults: {dataclasses.asdict(Config())}")
    print("| change from the defaults | validation accuracy | sample test accuracy | fit s |")
    print("|---|---|---|---|")
    for changes in VARIANTS:
        val, test, seconds = evaluate(changes, range(args.seeds))
        name = ", ".join(f"{k}={v}" for k, v in changes.items()) or "(defaults)"
        print(f"| {name} | {val:.4f} | {test:.4f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
