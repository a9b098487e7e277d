"""Refusing, in one line, the options no run could use, before training, not after;
and naming the flags a run ignores (`--epochs 20` under L-BFGS), never silently dropping them.

`train`, `kernels push` and the kernel all ask here, so one input is refused or taken by all alike.
"""
import math
from collections import Counter

from .errors import UserError

FLOAT32_MAX = 3.4028234663852886e38
MAX_EPOCHS = 1_000_000  # far beyond any useful run; a bigger number would never finish
MAX_SEED = 2**64 - 1  # the largest seed torch's and numpy's generators take
MAX_FOLDS = 100


def check_config(cfg, train_labels=None) -> None:
    """Raise UserError for a value no run could use; with train.csv's labels, also for a hold-out split
    or folds that cannot be made from them."""
    if cfg.weight_decay == "auto" and not cfg.folds:
        raise UserError("--weight-decay auto chooses the penalty by cross-validation; add --folds 5 "
                        "(or another K >= 2)")
    for name, accepted, expected in RULES:
        value = getattr(cfg, name)
        if not accepted(value):
            raise UserError(f"--{name.replace('_', '-')} must be {expected}, got {value}")
    if train_labels is None:
        return
    per_digit = Counter(train_labels.tolist())
    counts = [per_digit[digit] for digit in range(10)]  # examples of each digit
    if cfg.folds:
        digit = counts.index(min(counts))  # the rarest (the first of equals)
        if counts[digit] < cfg.folds:
            raise UserError(f"--folds {cfg.folds}: digit {digit} has only {counts[digit]} examples in "
                            f"train.csv, so some fold would hold none; use fewer folds or a larger train.csv")
        return
    for digit, count in enumerate(counts):  # the stratified hold-out split of core/split.py
        n_val = round(cfg.val_fraction * count)
        if n_val in (0, count):
            side = "validation" if n_val == 0 else "training"
            raise UserError(f"--val-fraction {cfg.val_fraction} leaves digit {digit} ({count} examples in "
                            f"train.csv) with no {side} example; use a larger train.csv or another fraction")


# check_config's rules, in order: (field, whether a value is accepted, what it must be). NaN fails each.
RULES = (
    ("val_fraction", lambda v: 0 < v < 1, "between 0 and 1 (exclusive)"),
    ("seed", lambda v: 0 <= v <= MAX_SEED, "an integer from 0 to 2**64-1"),
    ("epochs", lambda v: v >= 1, "a positive integer"),
    ("epochs", lambda v: v <= MAX_EPOCHS, f"at most {MAX_EPOCHS}"),
    ("patience", lambda v: v >= 0, "zero (never stop early) or a positive integer"),
    ("batch_size", lambda v: v >= 0, "a positive integer (or 0 for auto)"),
    ("lr", lambda v: 0 < v < math.inf, "a positive number"),
    ("weight_decay", lambda v: v == "auto" or 0 <= v < math.inf, "zero or a positive number"),
    ("folds", lambda v: v == 0 or 2 <= v <= MAX_FOLDS, f"0 (one hold-out split) or from 2 to {MAX_FOLDS}"),
    # The weights are 32-bit floats: a rate or penalty beyond this is infinity to them.
    ("lr", lambda v: v <= FLOAT32_MAX, f"at most {FLOAT32_MAX:.3g} (the weights are 32-bit floats)"),
    ("weight_decay", lambda v: v == "auto" or v <= FLOAT32_MAX,
     f"at most {FLOAT32_MAX:.3g} (the weights are 32-bit floats)"),
)


# Which fields a config does not use: (when, those fields, why). The notice, `runs` and the submit message
# read it, so an ignored setting is never shown as used; a new field or mode adds its row here.
NOT_APPLYING = (
    (lambda c: bool(c.folds), ("val_fraction", "patience"),
     "with --folds every training image is validated once, by the folds, and each fold fit runs every epoch"),
    (lambda c: bool(c.folds), ("refit",), "with --folds the model submitted is always the refit on all of "
     "train.csv at the strength CV chose"),
    (lambda c: c.weight_decay == "auto", ("epochs", "lr", "batch_size", "optimizer", "schedule", "patience"),
     "--weight-decay auto fits each strength to its optimum by full-batch L-BFGS"),
    (lambda c: c.optimizer == "lbfgs", ("epochs", "lr", "batch_size", "schedule", "patience"),
     "--optimizer lbfgs fits the model to the optimum of its penalised loss: no epochs, rate, batches or "
     "early stop"),
)


def not_applying(cfg) -> dict[str, str]:
    """Each field `cfg` does not use (whatever its value), with why."""
    moot = {}
    for applies, names, why in NOT_APPLYING:
        if applies(cfg):
            moot.update({name: moot.get(name, why) for name in names})
    return moot


def ignored_notice(cfg) -> str | None:
    """One line naming the flags set away from their defaults that this run does not use, or None."""
    moot, default = not_applying(cfg), type(cfg)()
    given = [name for name in moot if getattr(cfg, name) != getattr(default, name)]
    if not given:
        return None
    flags = [f"--{name.replace('_', '-')} {getattr(cfg, name)}" for name in given]
    reasons = list(dict.fromkeys(moot[name] for name in given))
    one = len(flags) == 1
    return f"note: {' and '.join(flags)} {'does' if one else 'do'} not apply here and " \
           f"{'is' if one else 'are'} ignored: {'; '.join(reasons)}"
