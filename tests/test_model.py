"""What the model does, specified on small synthetic or sample data: deskew, early stopping, schedule, standardiser."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from digit_recognizer.core.config import Config
from digit_recognizer.local_data import load_data
from digit_recognizer.core.deskew import SIDE, deskew_
from digit_recognizer.core.model import SoftmaxRegression
from digit_recognizer.core.train import fit, learning_rate


def moments(image: torch.Tensor) -> tuple[float, float, float]:
    """Centre of mass (x, y) and the slant cov(x, y) / var(y) of one 28x28 image."""
    coords = torch.arange(SIDE, dtype=image.dtype)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    mass = image.sum()
    cx, cy = (image * x).sum() / mass, (image * y).sum() / mass
    slant = (image * (x - cx) * (y - cy)).sum() / (image * (y - cy).square()).sum()
    return float(cx), float(cy), float(slant)


def sheared_bar(slant: float, x0: float, y0: float) -> torch.Tensor:
    """A 3-pixel-wide bar, 16 rows tall, leaning by `slant` columns per row, centred near (x0, y0)."""
    image = torch.zeros(SIDE, SIDE)
    for row in range(int(y0) - 8, int(y0) + 8):
        centre = x0 + slant * (row - y0)
        for col in range(SIDE):
            image[row, col] = max(0.0, 1.5 - abs(col - centre))
    return image


def test_deskew_makes_a_sheared_off_centre_bar_upright_and_centred():
    bar = sheared_bar(slant=0.4, x0=9.0, y0=17.0)
    cx, cy, slant = moments(bar)
    assert abs(slant - 0.4) < 0.05 and abs(cx - 9) < 0.5 and abs(cy - 16.5) < 0.5  # the input is what we think
    upright = deskew_(bar.reshape(1, -1).clone()).reshape(SIDE, SIDE)
    cx, cy, slant = moments(upright)
    centre = (SIDE - 1) / 2
    assert abs(slant) < 0.03, slant
    assert abs(cx - centre) < 0.3 and abs(cy - centre) < 0.3, (cx, cy)
    assert float(upright.sum()) == pytest.approx(float(bar.sum()), rel=0.02)  # moved, not lost: the bar stays inside


def sample_tensors(n: int = 1200):
    data = load_data(None)
    return torch.from_numpy(data.train_images[:n]), torch.from_numpy(data.train_labels[:n])


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights():
    pixels, labels = sample_tensors()
    # Validation images from the training set with every label shifted by one: the better the model
    # fits, the worse it scores there, so the first epoch is the best and nothing after it improves.
    wrong = (labels[:300] + 1) % 10
    cfg = dataclasses.replace(Config(), epochs=12, patience=2)
    result = fit(cfg, pixels, labels, pixels[:300], wrong)
    accuracies = [h["val_accuracy"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmax(accuracies))
    assert len(result.history) == result.best_epoch + cfg.patience < cfg.epochs  # stopped, `patience` later
    # The returned weights are the best epoch's: they reproduce its validation loss and accuracy.
    with torch.no_grad():
        logits = result.model(pixels[:300])
    best = result.history[result.best_epoch - 1]
    assert float((logits.argmax(1) == wrong).float().mean()) == pytest.approx(best["val_accuracy"], abs=1e-7)
    assert float(torch.nn.functional.cross_entropy(logits, wrong.long())) == pytest.approx(best["val_loss"], rel=1e-5)
    last = result.history[-1]
    assert last["val_loss"] != best["val_loss"]  # the last epoch's weights were indeed replaced

    never = fit(dataclasses.replace(cfg, patience=0), pixels, labels, pixels[:300], wrong)
    assert len(never.history) == cfg.epochs  # patience 0: every epoch runs


def test_cosine_schedule_starts_at_the_peak_and_ends_at_zero():
    cfg = Config()
    rates = [learning_rate(cfg, p / 100) for p in range(101)]
    assert rates[0] == cfg.lr and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(rates, rates[1:]))  # strictly decreasing in between
    assert rates[50] == pytest.approx(cfg.lr / 2)
    constant = dataclasses.replace(cfg, schedule="constant")
    assert {learning_rate(constant, p / 10) for p in range(11)} == {cfg.lr}


def test_standardiser_is_fitted_on_the_training_split_only():
    pixels, labels = sample_tensors(600)
    val_pixels = torch.full((50, 784), 255, dtype=torch.uint8)  # nothing like the training digits
    result = fit(dataclasses.replace(Config(), epochs=1), pixels, labels, val_pixels, labels[:50])
    prepared = SoftmaxRegression(True).prepare(pixels)
    torch.testing.assert_close(result.model.mean, prepared.mean(0))
    expected_std = (prepared - prepared.mean(0)).square().mean().sqrt()
    assert float(result.model.std[0]) == pytest.approx(float(expected_std), rel=1e-4)
    assert torch.all(result.model.std == result.model.std[0])  # one shared scale
    both = SoftmaxRegression(True).prepare(torch.cat([pixels, val_pixels]))
    assert not torch.allclose(result.model.mean, both.mean(0))  # the validation images would have moved it
