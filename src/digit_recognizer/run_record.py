"""Reading a run's metrics.json: the one tolerant loader that `runs`, `submit`, the submission records,
`kernels output`, `predict` and `score` all use.

The kernel writes the record (kernel.RunRecord, `"format": 2`); older kits wrote format 1 (no "format"
key), a Kaggle kernel's fetched output may hold anything, and a folder may be damaged. So every field is
read on its own and bounded: a missing, damaged or out-of-range value reads as unknown (None) with a
note saying which, never a traceback and never a silently wrong row. Text in the record may have come
from elsewhere (a fetched kernel output), so it passes the same gate as Kaggle's replies before it is
shown. Importing this module loads neither torch nor the kernel.
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .kaggle.outside_text import scrub

METRICS_NAME = "metrics.json"
# metrics.json's "data" for a run on the embedded sample, which Kaggle cannot score (submit refuses it).
SAMPLE_SOURCE = "embedded sample"
CURRENT_FORMAT = 2  # kernel.RECORD_FORMAT; a newer kit's record is still read, field by field
MAX_IMAGES = 10_000_000  # far beyond any digit CSV the kit accepts (512 MiB)
MAX_TEXT = 4096

# The settings of format-1 records (before the epoch options left the kit), with their defaults then, and
# when each did nothing: a run's "differs from default" shows what it changed and used, as it did then.
FORMAT_1_DEFAULTS = {"seed": 0, "val_fraction": 0.1, "epochs": 10, "patience": 3, "batch_size": 0, "lr": 0.003,
                     "weight_decay": 0.003, "optimizer": "lbfgs", "schedule": "cosine",
                     "features": "orientations", "refit": False, "folds": 0, "device": "auto"}
FORMAT_1_UNUSED = (
    (lambda c: bool(c.get("folds")), ("val_fraction", "patience", "refit")),
    (lambda c: c.get("weight_decay") == "auto", ("epochs", "lr", "batch_size", "optimizer", "schedule", "patience")),
    (lambda c: c.get("optimizer") == "lbfgs", ("epochs", "lr", "batch_size", "schedule", "patience")),
)


@dataclass
class CVSummary:
    accuracy: float
    stderr: float
    folds: int | None


@dataclass
class SavedRun:
    """What a run folder's metrics.json says, each field None where it is missing or not believable."""
    present: bool = False  # whether there is a metrics.json at all
    format: int | None = None
    data: str | None = None  # what it was trained on: a path, or SAMPLE_SOURCE
    val_accuracy: float | None = None
    validated: int | None = None  # images val_accuracy was measured on
    test_images: int | None = None
    cv: CVSummary | None = None
    settings: dict | None = None  # the settings it changed from the defaults and used
    notes: list[str] = field(default_factory=list)


def read_json(path: Path, notes: list[str]):
    """The parsed file, or None when it is missing or damaged (then with a note saying so)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"), parse_int=float_sized_int)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        value = None
    if value is None:  # unreadable, or a bare `null`: no kit writes either
        notes.append(f"damaged {path.name}")
    return value


def float_sized_int(text: str) -> int:
    """A JSON integer, refused (the file is then damaged) when no float can hold it: no kit writes one."""
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise ValueError(f"integer too large for a float: {text[:20]}...") from None
    return value


def read_run(folder: Path) -> SavedRun:
    """The run record in `folder`, read field by field."""
    run = SavedRun()
    metrics = read_json(folder / METRICS_NAME, run.notes)
    run.present = (folder / METRICS_NAME).exists()
    if metrics is None:
        return run
    if not isinstance(metrics, dict):
        run.notes.append(f"damaged {METRICS_NAME}")
        return run
    kind = metrics.get("format", 1)
    run.format = kind if is_integer(kind) and kind >= 1 else None
    if run.format is None:
        run.notes.append(f"damaged {METRICS_NAME} (format)")

    def damaged(name: str) -> None:
        run.notes.append(f"damaged {METRICS_NAME} ({name})")

    run.val_accuracy = bounded(metrics.get("val_accuracy"), 0.0, 1.0)
    if run.val_accuracy is None:
        damaged("val_accuracy") if "val_accuracy" in metrics else run.notes.append(
            f"{METRICS_NAME} has no val_accuracy")
    examples = metrics.get("examples") if isinstance(metrics.get("examples"), dict) else {}
    run.validated = whole(examples.get("validation"), 1, MAX_IMAGES)
    run.test_images = whole(examples.get("test"), 1, MAX_IMAGES)
    if "data" in metrics:
        run.data = shown_text(metrics["data"])
        if run.data is None:
            damaged("data")
    cv = metrics.get("cv")
    if cv is not None:
        run.cv = read_cv(cv)
        if run.cv is None:
            damaged("cv")
    run.settings = read_settings(metrics, run.format)
    if run.settings is None and ("config" in metrics or "settings_changed" in metrics):
        damaged("config")
    return run


def read_cv(cv) -> CVSummary | None:
    if not isinstance(cv, dict):
        return None
    accuracy, stderr = bounded(cv.get("accuracy"), 0.0, 1.0), bounded(cv.get("stderr"), 0.0, 1.0)
    if accuracy is None or stderr is None:
        return None
    return CVSummary(accuracy, stderr, whole(cv.get("folds"), 2, 100))


def read_settings(metrics: dict, kind: int | None) -> dict | None:
    """The settings the run changed from the defaults and used: written by the kernel since format 2, worked
    out for format 1 from its full config and that kit's defaults."""
    if kind is not None and kind >= 2:
        changed = metrics.get("settings_changed")
        if not isinstance(changed, dict):
            return None
        shown = {shown_text(k): v for k, v in changed.items() if is_scalar(v)}
        return None if None in shown or len(shown) != len(changed) else shown
    config = metrics.get("config")
    if not isinstance(config, dict):
        return None
    config = dict(config)
    if "features" not in config and "deskew" in config:  # saved before the feature ladder: deskew or not
        config["features"] = "deskew" if config["deskew"] else "pixels"
    if not all(is_scalar(config.get(name)) for name in FORMAT_1_DEFAULTS if name in config):
        return None
    unused = {name for applies, names in FORMAT_1_UNUSED if applies(config) for name in names}
    return {name: config[name] for name, default in FORMAT_1_DEFAULTS.items()
            if name in config and name not in unused and config[name] != default}


def settings_text(settings: dict | None) -> str:
    """{"weight_decay": "auto", "folds": 5} -> 'weight_decay=auto folds=5'; {} -> 'none'; unknown -> '?'."""
    if settings is None:
        return "?"
    return " ".join(f"{name}={shown_text(value)}" for name, value in settings.items()) or "none"


def data_shown(source: str | None) -> str:
    """The data a run was trained on as a person recognises it: its path (from here when it lies below)."""
    if not source:
        return "?"
    if source == SAMPLE_SOURCE:
        return source
    path = Path(source)
    try:
        return str(path.relative_to(Path.cwd())) if path.is_absolute() else source
    except ValueError:
        return source


def shown_text(value) -> str | None:
    """A string from the record made safe to print (the gate every outside text passes), or None."""
    if not isinstance(value, (str, int, float, bool)) or isinstance(value, float) and not math.isfinite(value):
        return None
    return scrub(str(value), limit=MAX_TEXT)


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, bool)) or is_number(value)


def is_number(value) -> bool:
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def bounded(value, low: float, high: float) -> float | None:
    return float(value) if is_number(value) and low <= value <= high else None


def whole(value, low: int, high: int) -> int | None:
    return value if is_integer(value) and low <= value <= high else None
