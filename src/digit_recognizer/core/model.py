"""Multinomial logistic regression: one linear layer on standardised (optionally deskewed) pixels.

Standardised with each pixel's training mean and one scale shared by all pixels: a scale per pixel
would blow up the border pixels that are almost never inked (0.930 against 0.939 validation, README).
"""
import io
from pathlib import Path

import torch
from torch import nn

from .deskew import deskew_

N_PIXELS = 784
N_CLASSES = 10
MODEL_FORMAT = 1


class SoftmaxRegression(nn.Module):
    """Logits = W x + b on preprocessed pixels; cross-entropy turns them into a softmax model.

    The preprocessing (deskew flag, per-pixel mean and std fitted on the training split) is part
    of the model, so a saved model predicts raw Kaggle pixels exactly as it did in training.
    """

    def __init__(self, use_deskew: bool = True):
        super().__init__()
        self.use_deskew = use_deskew
        self.linear = nn.Linear(N_PIXELS, N_CLASSES)
        # Zero start: the loss is convex, so this costs nothing and makes runs reproducible by construction.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("mean", torch.zeros(N_PIXELS))
        self.register_buffer("std", torch.ones(N_PIXELS))

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (n, 784) -> float ink in [0, 1], deskewed when enabled."""
        ink = pixels.to(self.mean.dtype).div_(255.0)
        return deskew_(ink) if self.use_deskew else ink

    def fit_standardizer(self, prepared: torch.Tensor) -> None:
        """Centre each pixel on its training-split mean and scale all by one shared std.

        One shared scale, not one per pixel: dividing each pixel by its own std blows up the
        near-empty border pixels, and on validation it loses to plain centring (see README).
        """
        self.mean.copy_(prepared.mean(0))
        # Variance about the per-pixel means, E[x^2] - E[mean^2], without a copy of the data.
        mean_square = torch.linalg.vector_norm(prepared).square() / prepared.numel()
        self.std.fill_(0).add_((mean_square - self.mean.square().mean()).clamp_min(1e-12).sqrt())

    def standardize(self, prepared: torch.Tensor) -> torch.Tensor:
        """In place: `prepared` is always a fresh tensor from prepare()."""
        return prepared.sub_(self.mean).div_(self.std)

    def features_of(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.standardize(self.prepare(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features_of(pixels))


def save_model(model: SoftmaxRegression, path: Path, extra: dict) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # written by Python, so that a full disk is an OSError, not torch's RuntimeError
    torch.save({"format": MODEL_FORMAT, "use_deskew": model.use_deskew, "state_dict": state, **extra}, buffer)
    Path(path).write_bytes(buffer.getvalue())
