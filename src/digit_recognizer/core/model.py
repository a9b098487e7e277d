"""Multinomial logistic regression: one linear layer on standardised features of the image.

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
    """Logits = W x + b on preprocessed pixels; cross-entropy turns them into a softmax model.

    The preprocessing (the feature rung, each feature's mean and each block's scale, fitted on the
    training split) is part of the model, so a saved model predicts raw Kaggle pixels exactly as it
    did in training.
    """

    def __init__(self, features: str = DEFAULT_RUNG):
        super().__init__()
        self.features = features
        n_features = feature_count(features)
        self.linear = nn.Linear(n_features, N_CLASSES)
        # Zero start: the loss is convex, so this costs nothing and makes runs reproducible by construction.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (n, 784) -> the rung's float features (n, d), not yet standardised."""
        return image_features(pixels, self.features, self.mean.dtype)

    def fit_standardizer(self, prepared: torch.Tensor) -> None:
        """Centre each feature on its training-split mean and scale each block by one shared std.

        One scale per block (the pixels; the orientation planes), not one per feature: dividing
        each pixel by its own std blows up the near-empty border pixels, and on validation it
        loses to plain centring (see README).
        """
        self.mean.copy_(prepared.mean(0))
        for block in feature_blocks(self.features):
            self.std[block] = block_scale(prepared[:, block], self.mean[block])

    def standardize(self, prepared: torch.Tensor) -> torch.Tensor:
        """In place: `prepared` is always a fresh tensor from prepare()."""
        return prepared.sub_(self.mean).div_(self.std)

    def features_of(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.standardize(self.prepare(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features_of(pixels))


def block_scale(block: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The std of a block's values about their own features' means: sqrt(E[x^2] - mean(mean^2)), no copy."""
    mean_square = torch.linalg.vector_norm(block).square() / block.numel()
    return (mean_square - mean.square().mean()).clamp_min(1e-12).sqrt()


def save_model(model: SoftmaxRegression, path: Path, extra: dict) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # written by Python, so that a full disk is an OSError, not torch's RuntimeError
    torch.save({"format": MODEL_FORMAT, "features": model.features, "state_dict": state, **extra}, buffer)
    Path(path).write_bytes(buffer.getvalue())
