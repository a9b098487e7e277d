"""Evidence for the default config: the feature ladder and one-at-a-time changes, 5-fold CV on the embedded sample.

Each row runs K-fold cross-validation (stratified, seed 0; the same folds for every row) on the sample's
train.csv (4,000 digits) and reports the mean held-out accuracy across folds ± its standard error, the
paired difference from the defaults' row ± its standard error (the same folds, so most of the fold-to-fold
spread cancels: this is the column that says whether a change helps), and the accuracy of the row's one
model on the sample's test.csv (1,000 digits never used to choose anything), scored with its solution.csv.

The kit fits every model to the optimum of its penalised loss (L-BFGS). The "epochs" rows fit the same
one layer on the same features the way tutorials do instead, for comparison: Adam (or Nesterov SGD) from
torch.optim, batches of 256, a cosine learning-rate schedule, a fixed number of epochs (no early stop: a
held-out fold must not choose anything it then scores), the model submitted refitted the same way on all
4,000 digits.

With --data, the rows cross-validate on that folder's train.csv instead (Kaggle's own, say: the test
column is then empty, since Kaggle keeps its test labels). With --kaggle-size, a last table times one hold-out fit per rung (one model on 37,800 images, features
included) on Kaggle-size stand-in data.

    python benchmarks/tune.py [--kaggle-size]      # several minutes on 2 CPU cores
    python benchmarks/tune.py --data data          # Kaggle's train.csv: tens of minutes on 2 CPU cores
"""
import argparse
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

# The kit's progress lines would interleave with the tables (they cost well under a millisecond each).
os.environ.setdefault("TQDM_DISABLE", "1")

import digit_recognizer  # noqa: F401,E402  (before torch loads, as in the kit's own commands: threads sleep, not spin)
import numpy as np
import torch
import torch.nn.functional as F

from digit_recognizer.kernel import (FEATURE_RUNGS, Config, cross_validate, image_features, predict, standardiser,
                                     stratified_folds, stratified_split, train, training_device)
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.scale import write_kaggle_size
from digit_recognizer.submission_check import read_submission

# The tutorials' recipe, as the kit ran it before the optimum became its one fit.
EPOCHS = {"optimizer": "adam", "epochs": 10, "lr": 0.003, "weight_decay": 1e-3}
VARIANTS = [
    {},
    *({"features": rung, **EPOCHS} for rung in FEATURE_RUNGS),
    *({"features": rung} for rung in FEATURE_RUNGS[:-1]),
    {"features": "orientations", "weight_decay": 3e-3},  # the old default: no square root, a fixed strength
    # Fixed strengths around the scaled default's (10 / 3,200 = 0.0031 on a fold's training part).
    {"weight_decay": 3e-4}, {"weight_decay": 1e-3}, {"weight_decay": 3e-3}, {"weight_decay": 1e-2},
    {"weight_decay": 3e-2},
    {"weight_decay": "auto"},
    {**EPOCHS, "epochs": 30},
    {**EPOCHS, "optimizer": "sgd", "lr": 0.03},
]


def evaluate(changes: dict, folds: int, seed: int, data, truth: np.ndarray | None) -> dict:
    """One row: K-fold CV of the kit's fit at these settings (or of epochs of an optimiser, for comparison),
    and the accuracy of its submitted model on the test set when its true labels are known."""
    settings = {k: v for k, v in changes.items() if k in {f.name for f in dataclasses.fields(Config)}}
    config = Config(folds=folds, seed=seed, **settings)
    pixels, labels = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
    started = time.perf_counter()
    prepared = image_features(pixels, config.features)
    splits = stratified_folds(data.train_labels, folds, seed)
    if "optimizer" in changes:
        fold_accuracies = [epochs_fit(changes, prepared, labels, train_idx, val_idx, seed)[1]
                           for train_idx, val_idx in splits]
        model, _ = epochs_fit(changes, prepared, labels, np.arange(len(labels)), None, seed)
        mean = float(np.mean(fold_accuracies))
        estimate = {"accuracy": mean, "stderr": float(np.std(fold_accuracies, ddof=1) / math.sqrt(folds)),
                    "fold_accuracies": fold_accuracies, "weight_decay": changes["weight_decay"]}
        with torch.no_grad():
            predicted = model(standardised_test(changes, prepared, data)).argmax(1).numpy()
    else:
        trained = cross_validate(config, prepared, labels, splits)
        estimate = dataclasses.asdict(trained.cv)
        predicted = predict(trained.model, torch.from_numpy(data.test_images)).argmax(1).numpy()
    test = float((predicted == truth).mean()) if truth is not None else float("nan")
    return {**estimate, "test_accuracy": test, "seconds": time.perf_counter() - started}


def standardised_test(changes: dict, prepared: torch.Tensor, data) -> torch.Tensor:
    rung = changes.get("features", Config.features)
    mean, std = standardiser(prepared, rung)
    return (image_features(torch.from_numpy(data.test_images), rung) - mean) / std


def epochs_fit(changes: dict, prepared: torch.Tensor, labels: torch.Tensor, train_idx, val_idx, seed: int):
    """Epochs of torch.optim's Adam or Nesterov SGD on one fold: (the model, its held-out accuracy)."""
    rung = changes.get("features", Config.features)
    mean, std = standardiser(prepared[train_idx], rung)
    features, targets = (prepared[train_idx] - mean) / std, labels[train_idx].long()
    torch.manual_seed(seed)
    model = torch.nn.Linear(features.shape[1], 10)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    optimiser = torch.optim.Adam(model.parameters(), lr=changes["lr"]) if changes["optimizer"] == "adam" else \
        torch.optim.SGD(model.parameters(), lr=changes["lr"], momentum=0.9, nesterov=True)
    steps_per_epoch = -(-len(features) // 256)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, changes["epochs"] * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(changes["epochs"]):
        for batch in torch.randperm(len(features), generator=generator).split(256):
            loss = F.cross_entropy(model(features[batch]), targets[batch]) + \
                changes["weight_decay"] / 2 * model.weight.square().sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    if val_idx is None:
        return model, None
    with torch.no_grad():
        predicted = model((prepared[val_idx] - mean) / std).argmax(1)
    return model, float((predicted == labels[val_idx]).double().mean())


def ladder_table(folds: int, seed: int, folder: Path | None) -> None:
    data = load_data(folder)
    # The sample comes with its test labels; Kaggle keeps its own, so with --data that column is empty.
    truth = read_submission(SAMPLE_DIR / "solution.csv.gz", None) if folder is None else None
    print(f"defaults: {dataclasses.asdict(Config())}; {folds}-fold CV, seed {seed}; data: {data.source} "
          f"({len(data.train_labels)} training images)")
    print("| change from the defaults | CV accuracy ± SE | difference from defaults ± SE | weight decay "
          f"(submitted model) | test accuracy | s ({folds} folds + refit) |")
    print("|---|---|---|---|---|---|")
    base = None
    for changes in VARIANTS:
        row = evaluate(changes, folds, seed, data, truth)
        accuracies = np.array(row["fold_accuracies"])
        base = accuracies if base is None else base
        diff = accuracies - base
        diff_se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        name = ", ".join(f"{k}={v}" for k, v in changes.items()) or "(defaults)"
        print(f"| {name} | {row['accuracy']:.4f} ± {row['stderr']:.4f} | {diff.mean():+.4f} ± {diff_se:.4f} | "
              f"{row['weight_decay']:g} | {test_column(row['test_accuracy'])} | {row['seconds']:.1f} |", flush=True)


def test_column(accuracy: float) -> str:
    return "—" if math.isnan(accuracy) else f"{accuracy:.4f}"


def kaggle_size_times(seed: int) -> None:
    """One hold-out fit per rung on 42,000 stand-in images: what `train` spends fitting at Kaggle size."""
    with tempfile.TemporaryDirectory() as folder:
        data = load_data(write_kaggle_size(Path(folder)))
    n_train = len(stratified_split(data.train_labels, Config.val_fraction, seed)[0])
    print(f"\nhold-out fit at Kaggle size ({n_train} training images), {torch.get_num_threads()} threads")
    print("| features | L-BFGS iterations | features + fit s |")
    print("|---|---|---|")
    for rung in FEATURE_RUNGS:
        trained = train(Config(features=rung, seed=seed), data, training_device("cpu"))
        print(f"| {rung} | {trained.fit.iterations} | {trained.seconds:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="a Kaggle-format folder to cross-validate on instead of the "
                        "embedded sample (Kaggle's own train.csv: the evidence at Kaggle's size)")
    parser.add_argument("--kaggle-size", action="store_true", help="also time one fit per rung at Kaggle size")
    args = parser.parse_args()
    ladder_table(args.folds, args.seed, args.data)
    if args.kaggle_size:
        kaggle_size_times(args.seed)


if __name__ == "__main__":
    main()
