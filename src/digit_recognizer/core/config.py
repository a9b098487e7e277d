"""The one training configuration: every option of a run, with its default, and how torch's threads wait."""
import os
from dataclasses import dataclass

from .checks import check_config

# Set here because this module loads before torch, in the package and in the kernel: libgomp reads
# it when torch loads it. torch's OpenMP threads spin at every barrier by default, which on a busy
# machine steals the time the working thread needs (with one of two cores busy, `train` at Kaggle
# size took twice as long; see benchmarks/README.md); sleeping instead costs a quiet machine almost
# nothing for work this size. A user's own OpenMP wait settings are left alone.
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

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
        """Raise UserError for a value no run could use (core/checks.py); return the config."""
        check_config(self, train_labels)
        return self

    def batch_size_for(self, n_examples: int) -> int:
        """Auto: 256, or more on big data to keep 32 steps an epoch (fewer, larger steps reach the same
        validation accuracy there with less per-step overhead; README)."""
        return self.batch_size or max(256, -(-n_examples // 32))
