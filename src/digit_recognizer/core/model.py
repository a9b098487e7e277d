"""Multinomial logistic regression: one linear layer on standardised image features.

Standardised with each feature's training mean and one scale shared by each block of features (the
pixels; the orientation planes): a scale per pixel would blow up the border pixels that are almost
never inked (0.930 against 0.939 validation, README).
"""
import io
from pathlib import Path

import torch
from torch import nn

from .features import DEFAULT_RUNG, feature_blocks, feature_count, image_features

N_CLASSES = 10
MODEL_FORMAT = 2  # 2: the feature rung is saved; 1 (older runs) saved only whether it deskewed


class SoftmaxRegression(nn.Module):
    """Logits W (x - mean) / std + b. The rung, mean and scales are part of the model, so a saved model
    predicts raw Kaggle pixels exactly as it did in training."""

    def __init__(self, features: str = DEFAULT_RUNG):
        super().__init__()
        self.features = features
        n_features = feature_count(features)
        self.linear = nn.Linear(n_features, N_CLASSES)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def features_of(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.standardised(image_features(pixels, self.features))

    def standardised(self, prepared: torch.Tensor) -> torch.Tensor:  # in place: prepared is always fresh
        return prepared.sub_(self.mean).div_(self.std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features_of(pixels))


def standardiser(prepared: torch.Tensor, features: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's mean over these training rows, and each block's one scale about those means."""
    mean, std = prepared.mean(0), torch.empty(prepared.shape[1], device=prepared.device)
    for block in feature_blocks(features):
        # sqrt(E[x^2] - mean(mean^2)): the block's std about its own features' means, without a copy.
        mean_square = torch.linalg.vector_norm(prepared[:, block]).square() / prepared[:, block].numel()
        std[block] = (mean_square - mean[block].square().mean()).clamp_min(1e-12).sqrt()
    return mean, std


def save_model(model: SoftmaxRegression, path: Path, extra: dict) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # written by Python, so that a full disk is an OSError, not torch's RuntimeError
    torch.save({"format": MODEL_FORMAT, "features": model.features, "state_dict": state, **extra}, buffer)
    Path(path).write_bytes(buffer.getvalue())
