"""The one training configuration, and the command-line flags made from it."""
import argparse
import dataclasses
import math
from dataclasses import dataclass, fields

from .errors import UserError

# The weights are 32-bit floats: a rate or penalty beyond this is infinity to them.
FLOAT32_MAX = 3.4028234663852886e38
MAX_EPOCHS = 1_000_000  # far beyond any useful run; a bigger number would never finish
MAX_SEED = 2**64 - 1  # the largest seed torch's and numpy's generators take


@dataclass(frozen=True)
class Config:
    seed: int = 0
    val_fraction: float = 0.1
    epochs: int = 10
    patience: int = 3  # 0: never stop early
    batch_size: int = 0  # 0: auto, see batch_size_for
    lr: float = 0.003
    weight_decay: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "cosine"
    deskew: bool = True
    refit: bool = False
    device: str = "auto"

    def check(self) -> "Config":
        """Raise UserError for values no run could use."""
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be an integer from 0 to 2**64-1, got {self.seed}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be a positive integer, got {self.epochs}")
        if self.epochs > MAX_EPOCHS:
            raise UserError(f"--epochs must be at most {MAX_EPOCHS}, got {self.epochs}")
        if self.patience < 0:
            raise UserError(f"--patience must be zero (never stop early) or a positive integer, got {self.patience}")
        if self.batch_size < 0:
            raise UserError(f"--batch-size must be a positive integer (or 0 for auto), got {self.batch_size}")
        if not 0 < self.lr < math.inf:
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise UserError(f"--weight-decay must be zero or a positive number, got {self.weight_decay}")
        for flag, value in (("--lr", self.lr), ("--weight-decay", self.weight_decay)):
            if value > FLOAT32_MAX:
                raise UserError(f"{flag} must be at most {FLOAT32_MAX:.3g} (the weights are 32-bit floats), got {value}")
        return self

    def batch_size_for(self, n_examples: int) -> int:
        """Auto batch size: 256, grown on big data to keep 32 steps an epoch.

        Small data needs many small steps; on Kaggle-size data fewer, larger steps reach the same
        validation accuracy with less per-step overhead (see README).
        """
        return self.batch_size or max(256, -(-n_examples // 32))

    def changes(self) -> dict:
        """Fields that differ from the defaults: what makes this run different from a plain one."""
        default = Config()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}


CHOICES = {"optimizer": ("adam", "sgd"), "schedule": ("cosine", "constant"), "device": ("auto", "cpu", "cuda")}
HELP = {
    "seed": "random seed for the split, initialisation and batch order",
    "val_fraction": "fraction of train.csv held out, stratified by label, to validate on",
    "epochs": "passes over the training split (the learning-rate schedule spans them all)",
    "patience": "stop after this many epochs without a better validation accuracy; 0 = never",
    "batch_size": "examples per optimiser step; 0 = auto: 256, or enough for 32 steps an epoch on big data",
    "lr": "peak learning rate",
    "weight_decay": "L2 penalty on the weights",
    "optimizer": "optimiser",
    "schedule": "learning-rate schedule over the run",
    "deskew": "straighten each digit by its second moments before the linear layer",
    "refit": "after choosing the best epoch on validation, retrain on train+validation for the predictions",
    "device": "where to train: auto picks CUDA when available",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, so the CLI and the Kaggle kernel accept the same options."""
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default, help=HELP[f.name])
            continue
        kind = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__)
        parser.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=CHOICES.get(f.name),
                            help=f"{HELP[f.name]} (default: {f.default})")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(**{f.name: getattr(args, f.name) for f in fields(Config)}).check()


def config_from_dict(values: dict) -> Config:
    """Rebuild a Config from a saved run, ignoring keys an older or newer kit wrote."""
    known = {f.name for f in fields(Config)}
    return dataclasses.replace(Config(), **{k: v for k, v in values.items() if k in known})
