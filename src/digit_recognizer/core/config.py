"""The one training configuration, the command-line flags made from it, and how torch's threads wait."""
import argparse
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, fields

from .errors import UserError

# Set here because this module loads before torch, in the package and in the kernel: libgomp reads
# it when torch loads it. torch's OpenMP threads spin at every barrier by default, which on a busy
# machine steals the time the working thread needs (with one of two cores busy, `train` at Kaggle
# size took twice as long; see benchmarks/README.md); sleeping instead costs a quiet machine almost
# nothing for work this size. A user's own OpenMP wait settings are left alone.
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# The weights are 32-bit floats: a rate or penalty beyond this is infinity to them.
FLOAT32_MAX = 3.4028234663852886e38
MAX_EPOCHS = 1_000_000  # far beyond any useful run; a bigger number would never finish
MAX_SEED = 2**64 - 1  # the largest seed torch's and numpy's generators take
MAX_FOLDS = 100
# L2 strengths that --weight-decay auto tries (see README: the sample's optimum, 0.003, sits inside it).
# 0.1 lost 0.7 points of CV on the sample's orientation features, and more data only favours weaker
# penalties, so it is not tried: a fifth of the CV's cost.
WEIGHT_DECAY_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
# The feature ladder (core/features.py), from what the tutorials feed a linear model to the default.
FEATURE_RUNGS = ("pixels", "deskew", "normalised", "orientations")


@dataclass(frozen=True)
class Config:
    seed: int = 0
    val_fraction: float = 0.1
    epochs: int = 10
    patience: int = 3  # 0: never stop early
    batch_size: int = 0  # 0: auto, see batch_size_for
    lr: float = 0.003
    weight_decay: float | str = 3e-3  # or "auto": chosen by cross-validation from WEIGHT_DECAY_GRID
    optimizer: str = "lbfgs"  # the optimum of the penalised loss; adam/sgd: epochs with early stopping
    schedule: str = "cosine"
    features: str = "orientations"
    refit: bool = False
    folds: int = 0  # 0: one stratified hold-out split; K >= 2: K-fold cross-validation
    device: str = "auto"

    def check(self, train_labels=None) -> "Config":
        """Raise UserError for values no run could use; with train.csv's labels, also when the validation
        this config asks for (its folds, else its hold-out split) cannot be made from them. The CLI and the
        kernel both ask here, so one input is refused or taken by both alike."""
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be an integer from 0 to 2**64-1, got {self.seed}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be a positive integer, got {self.epochs}")
        if self.epochs > MAX_EPOCHS:
            raise UserError(f"--epochs must be at most {MAX_EPOCHS}, got {self.epochs}")
        if self.patience < 0:
            raise UserError(f"--patience must be zero (never stop early) or a positive integer, "
                            f"got {self.patience}")
        if self.batch_size < 0:
            raise UserError(f"--batch-size must be a positive integer (or 0 for auto), got {self.batch_size}")
        if not 0 < self.lr < math.inf:
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.weight_decay == "auto" and not self.folds:
            raise UserError("--weight-decay auto chooses the penalty by cross-validation; add --folds 5 "
                            "(or another K >= 2)")
        if self.weight_decay != "auto" and not 0 <= self.weight_decay < math.inf:
            raise UserError(f"--weight-decay must be zero or a positive number, got {self.weight_decay}")
        if self.folds and not 2 <= self.folds <= MAX_FOLDS:
            raise UserError(f"--folds must be 0 (one hold-out split) or from 2 to {MAX_FOLDS}, "
                            f"got {self.folds}")
        for flag, value in (("--lr", self.lr), ("--weight-decay", self.weight_decay)):
            if value != "auto" and value > FLOAT32_MAX:
                raise UserError(f"{flag} must be at most {FLOAT32_MAX:.3g} (the weights are 32-bit floats), "
                                f"got {value}")
        if train_labels is not None:
            counts = Counter(train_labels.tolist() if hasattr(train_labels, "tolist") else train_labels)
            problem = folds_problem(counts, self.folds) if self.folds else \
                holdout_problem(counts, self.val_fraction)
            if problem:
                raise UserError(problem)
        return self

    def not_applying(self) -> dict[str, str]:
        """Each field this config does not use (whatever its value), with why: from NOT_APPLYING."""
        moot = {}
        for applies, names, why in NOT_APPLYING:
            if applies(self):
                moot.update({name: moot.get(name, why) for name in names})
        return moot

    def ignored_notice(self) -> str | None:
        """One line naming the flags set away from their defaults that this run does not use, or None."""
        moot, default = self.not_applying(), Config()
        given = [name for name in moot if getattr(self, name) != getattr(default, name)]
        if not given:
            return None
        flags = [f"--{name.replace('_', '-')} {getattr(self, name)}" for name in given]
        reasons = list(dict.fromkeys(moot[name] for name in given))
        return f"note: {' and '.join(flags)} {'does' if len(flags) == 1 else 'do'} not apply here and " \
               f"{'is' if len(flags) == 1 else 'are'} ignored: {'; '.join(reasons)}"

    def batch_size_for(self, n_examples: int) -> int:
        """Auto batch size: 256, grown on big data to keep 32 steps an epoch.

        Small data needs many small steps; on Kaggle-size data fewer, larger steps reach the same
        validation accuracy with less per-step overhead (see README).
        """
        return self.batch_size or max(256, -(-n_examples // 32))


def holdout_problem(counts: Counter, val_fraction: float) -> str | None:
    """Why the stratified hold-out split (core/split.py) cannot be made from these per-digit counts, if it
    cannot."""
    for digit in range(10):
        n_val = int(round(val_fraction * counts[digit]))
        if n_val == 0 or n_val == counts[digit]:
            side = "validation" if n_val == 0 else "training"
            return (f"--val-fraction {val_fraction} leaves digit {digit} ({counts[digit]} examples in "
                    f"train.csv) with no {side} example; use a larger train.csv or another fraction")
    return None


def folds_problem(counts: Counter, folds: int) -> str | None:
    """Why `folds` stratified folds cannot be made from these per-digit counts, if they cannot."""
    digit = min(range(10), key=lambda d: counts[d])
    if counts[digit] < folds:
        return (f"--folds {folds}: digit {digit} has only {counts[digit]} examples in train.csv, so some "
                f"fold would hold none; use fewer folds or a larger train.csv")
    return None


# Which fields a config does not use: (when, those fields, why). Config.check's notice, `runs` and the
# submit message read it, so a setting that was ignored is never shown as one that was used. A new field or
# mode adds its row here.
NOT_APPLYING = (
    (lambda c: bool(c.folds), ("val_fraction", "patience"),
     "with --folds every training image is validated once, by the folds, and each fold fit runs every epoch"),
    (lambda c: c.weight_decay == "auto", ("epochs", "lr", "batch_size", "optimizer", "schedule", "patience"),
     "--weight-decay auto fits each strength to its optimum by full-batch L-BFGS"),
    (lambda c: c.optimizer == "lbfgs", ("epochs", "lr", "batch_size", "schedule", "patience"),
     "--optimizer lbfgs fits the model to the optimum of its penalised loss: no epochs, rate, batches or "
     "early stop"),
)


CHOICES = {"features": FEATURE_RUNGS, "optimizer": ("adam", "sgd", "lbfgs"),
           "schedule": ("cosine", "constant"), "device": ("auto", "cpu", "cuda")}
HELP = {
    "seed": "random seed for the split, initialisation and batch order",
    "val_fraction": "fraction of train.csv held out, stratified by label, to validate on",
    "epochs": "passes over the training split (the learning-rate schedule spans them all)",
    "patience": "stop after this many epochs without a better validation accuracy; 0 = never",
    "batch_size": "examples per optimiser step; 0 = auto: 256, or enough for 32 steps an epoch on big data",
    "lr": "peak learning rate",
    "weight_decay": "L2 penalty on the weights, or 'auto': the best of "
                    f"{', '.join(map(str, WEIGHT_DECAY_GRID))} by cross-validation (needs --folds), each "
                    "strength fitted to its optimum by full-batch L-BFGS (the epoch, rate, batch and "
                    "optimiser flags then do not apply)",
    "optimizer": "optimiser: adam or sgd run --epochs with early stopping; lbfgs fits the optimum of the "
                 "penalised loss (full-batch L-BFGS; the epoch, rate, batch, schedule and patience flags "
                 "then do not apply)",
    "schedule": "learning-rate schedule over the run",
    "features": "what the linear layer sees: raw pixels; deskewed pixels; normalised (deskewed, scaled to "
                "one height, blurred); orientations (normalised + 392 pooled gradient-direction planes)",
    "refit": "after choosing the best epoch on validation, retrain on train+validation for the predictions; "
             "with --folds, retrain on all of train.csv instead of averaging the fold models "
             "(--weight-decay auto always does: its model is the optimum on all of train.csv)",
    "folds": "K >= 2: K-fold cross-validation, printed as the expected public score +- its standard error; "
             "0 = one hold-out split",
    "device": "where to train: auto picks CUDA when available",
}


def weight_decay_value(text: str) -> float | str:
    """--weight-decay takes a number or the word auto."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


PARSERS = {"weight_decay": weight_decay_value}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, so the CLI and the Kaggle kernel accept the same options."""
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=HELP[f.name])
            continue
        kind = PARSERS.get(f.name) or {"int": int, "float": float, "str": str}[getattr(f.type, "__name__",
                                                                                       f.type)]
        parser.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=CHOICES.get(f.name),
                            help=f"{HELP[f.name]} (default: {f.default})")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config the flags make, checked; a flag it will not use is said on stderr, not silently dropped."""
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config)}).check()
    notice = cfg.ignored_notice()
    if notice:
        print(notice, file=sys.stderr)
    return cfg

