"""Scores of a labelling: accuracy, per-class accuracy, confusion matrix."""
import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Rows are true digits, columns predicted digits."""
    pairs = truth.astype(np.int64) * n_classes + predicted
    return np.bincount(pairs, minlength=n_classes**2).reshape(n_classes, n_classes)


def per_class_accuracy(confusion: np.ndarray) -> list[float]:
    totals = confusion.sum(1)
    return [float(confusion[i, i] / totals[i]) if totals[i] else float("nan") for i in range(len(confusion))]


def format_confusion(confusion: np.ndarray) -> str:
    """A text table: true digits down, predictions across, per-class accuracy on the right."""
    header = "true\\pred " + " ".join(f"{d:>5}" for d in range(len(confusion))) + f"{'acc':>8}"
    lines = [header]
    for digit, (row, acc) in enumerate(zip(confusion, per_class_accuracy(confusion))):
        lines.append(f"{digit:>9} " + " ".join(f"{n:>5}" for n in row) + f"  {acc:6.1%}")
    return "\n".join(lines)
