"""One training run from data to outputs: split, fit, validate, (refit), predict, write."""
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .cv import cross_validate
from .data import DigitData
from .metrics import confusion_matrix, per_class_accuracy
from .model import save_model
from .pictures import write_run_pictures
from .split import stratified_split
from .submission import write_submission
from .train import fit, predict, resolve_device, to_device
from .fileio import atomic_write, write_json


def run_training(cfg: Config, data: DigitData, out_dir: Path, timings: dict | None = None) -> dict:
    """Train with validation; write submission.csv, model.pt, the pictures and (last) metrics.json into
    out_dir; return the metrics."""
    timings = dict(timings or {})  # the caller's own, e.g. import and load seconds
    clock = time.perf_counter()
    device = resolve_device(cfg.device)
    pixels, labels = to_device(data.train_images, device), to_device(data.train_labels, device)
    test_pixels = to_device(data.test_images, device)
    timings["to_device"] = time.perf_counter() - clock

    trained = (cross_validated if cfg.folds else held_out)(cfg, data, pixels, labels, timings)
    model, val_idx = trained.pop("model"), trained.pop("val_idx")
    val_probabilities = trained.pop("val_probabilities")
    clock = time.perf_counter()
    test_labels = predict(model, test_pixels).argmax(1).cpu().numpy()
    timings["predict"] = time.perf_counter() - clock
    metrics = {
        "data": data.source,
        **trained,
        "config": asdict(cfg),
        "device": describe_device(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "timings_seconds": timings,
    }
    metrics["examples"]["test"] = len(test_labels)
    clock = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(out_dir, model, test_labels, metrics)
    timings["write"] = time.perf_counter() - clock
    clock = time.perf_counter()
    metrics.update(write_run_pictures(out_dir, model, data.train_images[val_idx], data.train_labels[val_idx],
                                      val_probabilities, metrics["confusion_matrix"], metrics["history"],
                                      metrics.get("cv")))
    timings["pictures"] = time.perf_counter() - clock
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def held_out(cfg: Config, data: DigitData, pixels: torch.Tensor, labels: torch.Tensor, timings: dict) -> dict:
    """One stratified hold-out split: the best epoch on it, optionally refitted on all of train.csv."""
    train_idx, val_idx = stratified_split(data.train_labels, cfg.val_fraction, cfg.seed)
    train_at, val_at = to_device(train_idx, pixels.device), to_device(val_idx, pixels.device)
    val_pixels, val_labels = pixels[val_at], labels[val_at]
    result = fit(cfg, pixels[train_at], labels[train_at], val_pixels, val_labels)
    timings["fit"] = result.seconds
    val_probabilities = predict(result.model, val_pixels)  # kept for errors.png
    validation = validation_report(val_probabilities, val_labels)
    model, refit = result.model, None
    if cfg.refit:
        refitted = fit(cfg, pixels, labels, epochs=result.best_epoch, desc="refit")
        model, timings["refit"] = refitted.model, refitted.seconds
        epochs = "to the optimum (L-BFGS)" if cfg.optimizer == "lbfgs" else result.best_epoch
        refit = {"epochs": epochs, "examples": len(labels)}
    return {"model": model, "val_idx": val_idx, "val_probabilities": val_probabilities,
            "examples": {"train": len(train_idx), "validation": len(val_idx)}, **validation,
            "best_epoch": result.best_epoch, "refit": refit, "history": result.history}


def cross_validated(cfg: Config, data: DigitData, pixels: torch.Tensor, labels: torch.Tensor,
                    timings: dict) -> dict:
    """K-fold CV: every training image is validated once, by the fold fits that did not see it."""
    result = cross_validate(cfg, pixels, labels)
    timings["fit"] = result.seconds
    probabilities = result.oof_probabilities
    validation = validation_report(probabilities, labels)
    n, auto = len(labels), cfg.weight_decay == "auto"
    refit = {"epochs": "to the optimum (L-BFGS)" if auto else cfg.epochs, "examples": n} \
        if cfg.refit or auto else None
    return {"model": result.model, "val_idx": np.arange(n), "val_probabilities": probabilities,
            "examples": {"train": n, "validation": n}, **validation, "best_epoch": cfg.epochs,
            "refit": refit, "history": result.history, "cv": result.summary}


def validation_report(probabilities: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, loss, per-class accuracy and confusion matrix of held-out class probabilities."""
    loss = F.nll_loss(probabilities.clamp_min(1e-12).log(), labels.long()).item()
    predicted = probabilities.argmax(1).cpu().numpy()
    truth = labels.cpu().numpy()
    confusion = confusion_matrix(truth, predicted)
    return {"val_accuracy": float((predicted == truth).mean()), "val_loss": loss,
            "per_class_accuracy": per_class_accuracy(confusion), "confusion_matrix": confusion.tolist()}


def write_outputs(out_dir: Path, model, test_labels: np.ndarray, metrics: dict) -> None:
    write_submission(out_dir / "submission.csv", test_labels)
    # "data": what `predict` defaults to, so a model trained on real data never predicts the sample by
    # surprise.
    extra = {"config": metrics["config"], "val_accuracy": metrics["val_accuracy"], "data": metrics["data"]}
    atomic_write(out_dir / "model.pt", lambda temp: save_model(model, temp, extra))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
