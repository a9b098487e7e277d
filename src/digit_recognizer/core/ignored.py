"""The flags a run does not use: `--epochs 20` under L-BFGS is said to be ignored, never silently dropped."""

# Which fields a config does not use: (when, those fields, why). The notice, `runs` and the submit message
# read it, so a setting that was ignored is never shown as one that was used. A new field or mode adds its
# row here.
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
