"""The one training configuration: every option of a run, and how torch's threads wait."""
import os
from dataclasses import dataclass, field

# Before torch loads: its OpenMP threads spin at every barrier, stealing a busy machine's time (one of two
# cores busy, `train` at Kaggle size took twice as long; benchmarks/README.md). A user's own setting stays.
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# L2 strengths --weight-decay auto tries: the sample's optimum, 0.003, sits inside. 0.1 lost 0.7 points of
# CV on the sample, and more data only favours weaker penalties (README).
WEIGHT_DECAY_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
# The feature ladder (core/features.py), from what the tutorials feed a linear model to the default.
FEATURE_RUNGS = ("pixels", "deskew", "normalised", "orientations")


def option(default, about: str, choices: tuple | None = None):
    """A Config field: its default, what it does (its flag's --help) and the values it takes."""
    return field(default=default, metadata={"help": about, "choices": choices})


@dataclass(frozen=True)
class Config:
    """Every option of a run, each also a flag of `train` and of the kernel (val_fraction: --val-fraction)."""
    seed: int = option(0, "random seed for the split, initialisation and batch order")
    val_fraction: float = option(0.1, "fraction of train.csv held out, stratified by label, to validate on")
    epochs: int = option(10, "passes over the training split (the learning-rate schedule spans them all)")
    patience: int = option(3, "stop after this many epochs without a better validation accuracy; 0 = never")
    batch_size: int = option(0, "examples per optimiser step; 0 = auto: 256, or 32 steps an epoch on big "
                             "data")
    lr: float = option(0.003, "peak learning rate")
    weight_decay: float | str = option(3e-3, "L2 penalty on the weights, or 'auto': the best of "
                                       f"{', '.join(map(str, WEIGHT_DECAY_GRID))} by cross-validation "
                                       "(needs --folds)")
    optimizer: str = option("lbfgs", "lbfgs: the optimum of the penalised loss (no epochs); adam or sgd: "
                            "epochs, early stop", ("adam", "sgd", "lbfgs"))
    schedule: str = option("cosine", "learning-rate schedule over the run", ("cosine", "constant"))
    features: str = option("orientations", "what the linear layer sees: raw pixels; deskewed; normalised "
                           "(deskewed, one height, blurred); orientations (normalised + 392 pooled "
                           "gradient-direction planes)", FEATURE_RUNGS)
    refit: bool = option(False, "retrain on all of train.csv for the predictions, at the best epoch (with "
                         "--folds always done)")
    folds: int = option(0, "K >= 2: K-fold cross-validation, the expected public score +- its standard "
                        "error; 0: none")
    device: str = option("auto", "where to train: auto picks CUDA when available", ("auto", "cpu", "cuda"))

    def batch_size_for(self, n_examples: int) -> int:
        """Auto: 256, or 32 steps an epoch on big data (as accurate there, with less per-step overhead)."""
        return self.batch_size or max(256, -(-n_examples // 32))
