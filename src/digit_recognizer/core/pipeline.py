"""One training run from data to outputs: split, fit, validate, predict, write."""
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .checks import check_config
from .config import Config
from .cv import cross_validate
from .data import DigitData
from .features import image_features
from .report import validation_scores
from .model import save_model
from .pictures import write_run_pictures
from .split import stratified_split
from .submission import write_submission
from .device import describe_device, resolve_device
from .train import by_optimum, fit, predict, to_device
from .fileio import atomic_write


def run_training(cfg: Config, data: DigitData, out_dir: Path, timings: dict | None = None) -> dict:
    """Train, validate, write submission.csv, model.pt, the pictures and (last) metrics.json; the metrics."""
    check_config(cfg, data.train_labels)  # the split or folds it asks for can be made from these labels
    timings = dict(timings or {})  # the caller's own, e.g. import and load seconds
    clock = time.perf_counter()
    device = resolve_device(cfg.device)
    pixels, labels = to_device(data.train_images, device), to_device(data.train_labels, device)
    test_pixels = to_device(data.test_images, device)
    timings["to_device"] = time.perf_counter() - clock

    trained = (cross_validate if cfg.folds else held_out)(cfg, pixels, labels, timings)
    model, val_idx, val_probabilities = (trained.pop(k) for k in ("model", "val_idx", "val_probabilities"))
    clock = time.perf_counter()
    test_labels = predict(model, test_pixels).argmax(1).cpu().numpy()
    timings["predict"] = time.perf_counter() - clock
    scores = validation_scores(data.train_labels[val_idx], val_probabilities)
    metrics = {"data": data.source, **trained, **scores,
               "config": asdict(cfg), "device": describe_device(device), "torch_version": torch.__version__,
               "python_version": platform.python_version(), "timings_seconds": timings}
    metrics["examples"]["test"] = len(test_labels)
    clock = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_submission(out_dir / "submission.csv", test_labels)
    # "data": what `predict` defaults to, so a model trained on real data never predicts the sample unasked.
    extra = {"config": metrics["config"], "val_accuracy": metrics["val_accuracy"], "data": metrics["data"]}
    atomic_write(out_dir / "model.pt", lambda temp: save_model(model, temp, extra))
    timings["write"] = time.perf_counter() - clock
    clock = time.perf_counter()
    metrics.update(write_run_pictures(out_dir, model, data.train_images[val_idx], data.train_labels[val_idx],
                                      val_probabilities, metrics["confusion_matrix"], metrics["history"],
                                      metrics.get("cv")))
    timings["pictures"] = time.perf_counter() - clock
    atomic_write(out_dir / "metrics.json", lambda temp: temp.write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics


def held_out(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor, timings: dict) -> dict:
    """One stratified hold-out split: the model fitted on the rest, or refitted on all of train.csv."""
    clock = time.perf_counter()
    train_idx, val_idx = stratified_split(labels.cpu().numpy(), cfg.val_fraction, cfg.seed)
    prepared = image_features(pixels, cfg.features)
    result = fit(cfg, prepared, labels, [(train_idx, val_idx)])
    timings["fit"] = time.perf_counter() - clock
    model, refit = result.model(), None
    with torch.no_grad():  # errors.png's, from the features made above rather than from the pixels again
        val_probabilities = model.linear(model.standardised(prepared[val_idx])).softmax(1)
    if cfg.refit:
        clock = time.perf_counter()
        everything = (np.arange(len(labels)), np.arange(0))
        model = fit(cfg, prepared, labels, [everything], epochs=result.best_epoch, desc="refit").model()
        timings["refit"] = time.perf_counter() - clock
        refit = {"epochs": "to the optimum (L-BFGS)" if by_optimum(cfg) else result.best_epoch,
                 "examples": len(labels)}
    return {"model": model, "val_idx": val_idx, "val_probabilities": val_probabilities,
            "examples": {"train": len(train_idx), "validation": len(val_idx)},
            "best_epoch": result.best_epoch, "refit": refit, "history": result.history}

