"""What a finished run prints, the same after `digit-recognizer train` and at the end of the kernel's log."""
from pathlib import Path

import numpy as np

from .cv import summary_line
from .metrics import format_confusion


def report_lines(metrics: dict, folder: Path, folder_kind: str, total_seconds: float) -> list[str]:
    """The run's summary; last the submission, the validation accuracy and (with --folds) the CV
    estimate: what one looks for first.

    `folder_kind` names where the outputs went: "run folder" locally, "output folder" in the kernel.
    """
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in metrics["timings_seconds"].items())
    if metrics.get("cv"):
        fitted = f"{metrics['cv']['folds']}-fold CV"
    elif metrics["config"].get("optimizer") == "lbfgs":
        fitted = f"fitted to the optimum by L-BFGS in {metrics['best_epoch']} iterations"
    else:
        fitted = fitted_epochs(metrics)
    lines = [f"device: {metrics['device']}; {fitted}",
             f"timings: {timings}; total {total_seconds:.2f}s",
             "validation confusion matrix (rows: true digit, columns: predicted) and per-class accuracy:",
             format_confusion(np.array(metrics["confusion_matrix"]))]
    if metrics.get("cv"):  # no hold-out split to refit over: the CV says how its model was made
        lines.append(f"predictions from the {metrics['cv']['model']}")
    elif metrics["refit"]:
        epochs = metrics['refit']['epochs']
        lines.append(f"predictions from a refit on train+validation ({metrics['refit']['examples']} images, "
                     f"{epochs if isinstance(epochs, str) else f'{epochs} epochs'})")
    lines.append(f"{folder_kind}: {folder}")
    if metrics.get("pictures"):
        lines.append(f"pictures: {', '.join(metrics['pictures'])} in the {folder_kind}")
    lines.append(f"submission: {folder / 'submission.csv'}")
    kind = "out-of-fold: each image validated by the fold fit that did not see it" if metrics.get("cv") else \
        "held out"
    lines.append(f"validation accuracy: {metrics['val_accuracy']:.4f} ({metrics['examples']['validation']} "
                 f"images, {kind})")
    if metrics.get("cv"):
        lines.append(summary_line(metrics["cv"]))
    return lines


def fitted_epochs(metrics: dict) -> str:
    """The best epoch, and whether early stopping ended the run before its last epoch."""
    best, planned, ran = metrics["best_epoch"], metrics["config"]["epochs"], len(metrics.get("history") or [])
    if 0 < ran < planned:
        waited = ran - best
        return (f"best epoch {best}; stopped early after epoch {ran} of {planned} ({waited} epoch"
                f"{'s' if waited != 1 else ''} without a better validation accuracy, --patience "
                f"{metrics['config']['patience']})")
    return f"best epoch {best} of {planned}"
