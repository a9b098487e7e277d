"""Training: all of a run's models fitted at once, each fold standardised on its own rows.

A hold-out split is one fold; K-fold CV (section 8) is K of them, with one model per L2 strength
tried. By default each model is the optimum of its mean cross-entropy + weight_decay/2 |W|^2, found
by L-BFGS (section 7): the loss is convex, so there is one optimum and nothing to stop early.
`--optimizer adam` or `sgd` fits by epochs instead and keeps the hold-out's best epoch (section 10).
"""

import numpy as np
import torch

from .config import Config
from .lbfgs import fit_to_optimum
from .model import SoftmaxRegression, standardiser
from .optimizer import fit_epochs


def by_optimum(cfg: Config) -> bool:
    return cfg.optimizer == "lbfgs" or cfg.weight_decay == "auto"


class Folds:
    """Each fold's training and validation rows of the prepared images, padded to one length so that the
    folds stack into one batched tensor (the masks mark a fold's own rows), and its standardiser; once
    fitted, the weights (folds, d, strengths * 10: a 10-column block per L2 strength), the bias (folds, 1,
    strengths * 10), the history and the best epoch (L-BFGS: its iterations)."""

    def __init__(self, cfg: Config, prepared: torch.Tensor, labels: torch.Tensor, splits: list):
        device, targets = prepared.device, labels.long()
        self.prepared, self.count, self.features = prepared, len(splits), cfg.features
        train = [to_device(rows, device) for rows, _ in splits]
        if not by_optimum(cfg):  # shuffled once: each minibatch is then a contiguous slice, a view
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
            train = [rows[torch.randperm(len(rows), device=device, generator=generator)] for rows in train]
        self.train, self.train_mask = padded(train)
        self.val, self.val_mask = padded([to_device(rows, device) for _, rows in splits])
        self.train_features, self.train_targets = prepared[self.train], targets[self.train]  # (folds, n, d)
        self.val_features, self.val_targets = prepared[self.val], targets[self.val]
        own = [self.train_features[f, :len(rows)] for f, rows in enumerate(train)]
        self.mean, self.std = (torch.stack(s) for s in zip(*(standardiser(x, cfg.features) for x in own)))

    @torch.no_grad()
    def model(self) -> SoftmaxRegression:
        """The first fold's (the hold-out's) one model."""
        model = SoftmaxRegression(self.features).to(self.prepared.device)
        model.load_state_dict({"mean": self.mean[0], "std": self.std[0], "linear.weight": self.weight[0].T,
                               "linear.bias": self.bias[0, 0]})
        return model.eval()


def padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index rows of one length (each padded with its own first entries), and which entries are its own."""
    length, device = max(map(len, rows)), rows[0].device
    own = torch.arange(length, device=device) < torch.tensor([[len(r)] for r in rows], device=device)
    return torch.stack([torch.cat([r, r[:length - len(r)]]) for r in rows]), own


def fit(cfg: Config, prepared: torch.Tensor, labels: torch.Tensor, splits: list[tuple[np.ndarray, ...]],
        decays: list[float] | None = None, epochs: int | None = None, desc: str = "train") -> Folds:
    """Fit one model per (train, validation) split and L2 strength, all at once, on prepared features."""
    folds, decays = Folds(cfg, prepared, labels, splits), decays or [float(cfg.weight_decay)]
    fitted = fit_to_optimum(folds, decays, desc) if by_optimum(cfg) else \
        fit_epochs(cfg, folds, decays, epochs or cfg.epochs, desc)
    folds.weight, folds.bias, folds.history, folds.best_epoch = fitted
    return folds


@torch.no_grad()
def predict(model: SoftmaxRegression, pixels: torch.Tensor) -> torch.Tensor:
    """Class probabilities (n, 10) for uint8 pixels (n, 784), in chunks: 0.8 s, not 1.0, for 28,000 images."""
    return torch.cat([model.eval()(part).softmax(1) for part in pixels.split(16384)])


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)
