"""What training does, specified on small synthetic or sample data: early stopping, schedule, the optimum.

The features and the standardiser are specified in test_features.py.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from digit_recognizer.core.config import Config
from digit_recognizer.core.features import image_features
from digit_recognizer.core.optimizer import learning_rate
from digit_recognizer.core.train import fit
from digit_recognizer.local_data import load_data


def sample_tensors(n: int = 1200):
    data = load_data(None)
    return torch.from_numpy(data.train_images[:n]), torch.from_numpy(data.train_labels[:n])


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights():
    pixels, labels = sample_tensors()
    # Validation images from the training set with every label shifted by one: the better the model
    # fits, the worse it scores there, so the first epoch is the best and nothing after it improves.
    wrong = (labels[:300] + 1) % 10
    cfg = dataclasses.replace(Config(), optimizer="adam", epochs=12, patience=2)
    prepared = image_features(torch.cat([pixels, pixels[:300]]), cfg.features)
    splits = [(np.arange(len(pixels)), np.arange(len(pixels), len(pixels) + 300))]
    result = fit(cfg, prepared, torch.cat([labels, wrong]), splits)
    accuracies = [h["val_accuracy"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmax(accuracies))
    assert len(result.history) == result.best_epoch + cfg.patience < cfg.epochs  # stopped, `patience` later
    # The returned weights are the best epoch's: they reproduce its validation loss and accuracy.
    with torch.no_grad():
        logits = result.model()(pixels[:300])
    best = result.history[result.best_epoch - 1]
    assert float((logits.argmax(1) == wrong).float().mean()) == pytest.approx(best["val_accuracy"], abs=1e-7)
    assert float(torch.nn.functional.cross_entropy(logits, wrong.long())) == pytest.approx(best["val_loss"], rel=1e-5)
    last = result.history[-1]
    assert last["val_loss"] != best["val_loss"]  # the last epoch's weights were indeed replaced

    never = fit(dataclasses.replace(cfg, patience=0), prepared, torch.cat([labels, wrong]), splits)
    assert len(never.history) == cfg.epochs  # patience 0: every epoch runs


def test_cosine_schedule_starts_at_the_peak_and_ends_at_zero():
    cfg = Config()
    rates = [learning_rate(cfg, p / 100) for p in range(101)]
    assert rates[0] == cfg.lr and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(rates, rates[1:]))  # strictly decreasing in between
    assert rates[50] == pytest.approx(cfg.lr / 2)
    constant = dataclasses.replace(cfg, schedule="constant")
    assert {learning_rate(constant, p / 10) for p in range(11)} == {cfg.lr}
