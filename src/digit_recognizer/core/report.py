"""Scores, and the run summary that `digit-recognizer train` prints too, key lines last."""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def validation_scores(truth: np.ndarray, probabilities) -> dict:
    """metrics.json's accuracy, loss, per-class accuracy and confusion matrix of held-out probabilities."""
    predicted = probabilities.argmax(1).cpu().numpy()
    # Rows are true digits, columns predicted digits.
    confusion = np.bincount(truth.astype(np.int64) * 10 + predicted, minlength=100).reshape(10, 10)
    totals = confusion.sum(1)  # a digit with no validation image has no accuracy: nan
    per_class = np.divide(confusion.diagonal(), totals, out=np.full(10, np.nan), where=totals > 0).tolist()
    loss = F.nll_loss(probabilities.cpu().clamp_min(1e-12).log(), torch.from_numpy(truth).long())
    return {"val_accuracy": float((predicted == truth).mean()), "val_loss": loss.item(),
            "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist()}


def report_lines(metrics: dict, folder: Path, folder_kind: str, total_seconds: float) -> list[str]:
    """The run's summary; `folder_kind` is "run folder" locally, "output folder" in the kernel."""
    cv, config = metrics.get("cv"), metrics["config"]
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in metrics["timings_seconds"].items())
    if cv:
        fitted = f"{cv['folds']}-fold CV"
    elif config.get("optimizer") == "lbfgs":
        fitted = f"fitted to the optimum by L-BFGS in {metrics['best_epoch']} iterations"
    else:  # the best epoch, and whether early stopping ended the run before its last epoch
        best, planned, ran = metrics["best_epoch"], config["epochs"], len(metrics.get("history") or [])
        fitted = f"best epoch {best} of {planned}"
        if 0 < ran < planned:
            fitted = (f"best epoch {best}; stopped early after epoch {ran} of {planned} ({ran - best} "
                      f"epoch{'s' if ran - best != 1 else ''} without a better validation accuracy, "
                      f"--patience {config['patience']})")
    lines = [f"device: {metrics['device']}; {fitted}",
             f"timings: {timings}; total {total_seconds:.2f}s",
             "validation confusion matrix (rows: true digit, columns: predicted) and per-class accuracy:",
             "true\\pred " + " ".join(f"{d:>5}" for d in range(10)) + f"{'acc':>8}"]
    for digit, (row, acc) in enumerate(zip(metrics["confusion_matrix"], metrics["per_class_accuracy"])):
        lines.append(f"{digit:>9} " + " ".join(f"{n:>5}" for n in row) + f"  {acc:6.1%}")
    if cv:  # no hold-out split to refit over: the CV says how its model was made
        lines.append(f"predictions from the {cv['model']}")
    elif metrics["refit"]:
        epochs = metrics["refit"]["epochs"]
        lines.append(f"predictions from a refit on train+validation ({metrics['refit']['examples']} images, "
                     f"{epochs if isinstance(epochs, str) else f'{epochs} epochs'})")
    lines.append(f"{folder_kind}: {folder}")
    if metrics.get("pictures"):
        lines.append(f"pictures: {', '.join(metrics['pictures'])} in the {folder_kind}")
    lines.append(f"submission: {folder / 'submission.csv'}")
    kind = "out-of-fold: each image validated by the fold fit that did not see it" if cv else "held out"
    lines.append(f"validation accuracy: {metrics['val_accuracy']:.4f} ({metrics['examples']['validation']} "
                 f"images, {kind})")
    if cv:  # the expected public score, last
        chosen = f", weight decay {cv['weight_decay']:g} chosen by it" if len(cv["grid"]) > 1 else ""
        lines.append(f"expected public score {cv['accuracy']:.3f} ± {cv['stderr']:.3f} ({cv['folds']}-fold "
                     f"CV){chosen}")
    return lines

