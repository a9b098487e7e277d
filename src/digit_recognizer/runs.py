"""`digit-recognizer runs`: the local runs side by side, best first: runs with a CV estimate ranked by it
ahead of runs with only a hold-out accuracy, since a few hundred held-out images say less than every image
validated once (a 599-image hold-out's 0.963 scored 0.942 on Kaggle, a 6,000-image CV's 0.953 scored 0.948).

Every run folder is listed, whatever wrote it: an older or newer kit (missing or unknown keys), a
run fetched from a Kaggle kernel (origin.json, maybe no metrics), or a damaged folder, which gets a
note instead of stopping the table.
"""
import argparse
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .config_changes import config_changes
from .core.errors import UserError
from .run_folders import INCOMPLETE_PREFIX

# metrics.json's "data" for a run on the embedded sample, which Kaggle cannot score (submit refuses it).
SAMPLE_SOURCE = "embedded sample"
# A run id starts with the UTC time it started (run_folders.new_run_id).
RUN_ID_DATE = re.compile(r"^(\d{8}T\d{6}Z)(?:-|$)")



@dataclass
class RunSummary:
    run_id: str
    date: datetime | None
    val_accuracy: float | None = None
    cv: tuple[float, float] | None = None  # the k-fold CV estimate and its standard error, when the run had --folds
    folds: int | None = None
    validated: int | None = None  # how many images the accuracy was measured on
    data: str = "?"
    changes: str = "?"
    submitted: str = "no"
    public_score: float | None = None
    notes: list[str] = field(default_factory=list)


def runs_flag(parser: argparse.ArgumentParser, *old_names: str) -> None:
    """--runs DIR, the folder holding run folders: one name in every command."""
    parser.add_argument("--runs", type=Path, default=Path("submissions"), metavar="DIR",
                        help="the folder that holds run folders")
    for name in old_names:  # earlier spellings keep working, unlisted
        parser.add_argument(name, dest="runs", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def runs_flags(runs: argparse.ArgumentParser) -> None:
    runs_flag(runs, "--dir")
    runs.set_defaults(handler=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    summaries = list_runs(args.runs)
    print(format_runs_table(summaries) if summaries else f"no runs in {args.runs} yet")
    return 0


def list_runs(root: Path) -> list[RunSummary]:
    """Every published run folder under root, best validation accuracy first, those without one last."""
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise UserError(f"{root}: {what}; --runs takes the folder `digit-recognizer train` writes runs into")
    try:
        # Hidden folders are runs still being written (or abandoned by a killed process).
        folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", INCOMPLETE_PREFIX))]
    except OSError as exc:
        raise UserError(f"{root}: cannot list the folder ({exc.strerror})") from None
    summaries = [read_run_folder(folder) for folder in folders]
    newest_first = sorted(summaries, key=lambda s: s.date.timestamp() if s.date else 0.0, reverse=True)
    return sorted(newest_first, key=rank_key)


def rank_key(summary: RunSummary) -> tuple[int, float]:
    """CV estimates first, best first; then hold-out accuracies, best first; then runs with neither."""
    if summary.cv is not None:
        return 0, -summary.cv[0]
    if summary.val_accuracy is not None:
        return 1, -summary.val_accuracy
    return 2, math.inf


def estimate(summary: RunSummary) -> tuple[str, str, str]:
    """(accuracy, ± standard error, what it was measured on) as the table shows them."""
    if summary.cv is not None:
        on = f"{summary.folds}-fold CV" if summary.folds else "CV"
        return f"{summary.cv[0]:.4f}", f"{summary.cv[1]:.4f}", on + (f", {summary.validated} images" if summary.validated else "")
    if summary.val_accuracy is None:
        return "-", "-", "-"
    if not summary.validated:
        return f"{summary.val_accuracy:.4f}", "-", "hold-out"
    p, n = summary.val_accuracy, summary.validated
    # the binomial standard error of an accuracy on n images: how far another n would move it
    return f"{p:.4f}", f"{math.sqrt(p * (1 - p) / n):.4f}", f"hold-out, {n} images"


def read_run_folder(folder: Path) -> RunSummary:
    summary = RunSummary(folder.name, run_folder_date(folder))
    origin = read_run_json(folder / "origin.json", summary.notes)
    if isinstance(origin, dict) and origin.get("origin") == "kaggle":
        version = origin.get("version")
        summary.notes.append(f"output of Kaggle kernel version {version}" if isinstance(version, int)
                             else "output of a Kaggle kernel run")
        summary.data = "kaggle"
    elif isinstance(origin, dict) and isinstance(origin.get("origin"), str):
        summary.notes.append(f"origin: {origin['origin']}")
    elif origin is not None:
        summary.notes.append("damaged origin.json")
    metrics = read_run_json(folder / "metrics.json", summary.notes)
    if isinstance(metrics, dict):
        read_run_metrics(metrics, summary)
    elif metrics is not None:
        summary.notes.append("damaged metrics.json")
    elif not (folder / "metrics.json").exists() and not (folder / "origin.json").exists():
        summary.notes.append("no metrics.json (not a finished run?)")
    read_run_submissions(read_run_json(folder / "kaggle_submissions.json", summary.notes), summary)
    return summary


def read_run_json(path: Path, notes: list[str]):
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


def read_run_metrics(metrics: dict, summary: RunSummary) -> None:
    accuracy = metrics.get("val_accuracy")
    if is_json_number(accuracy) and 0.0 <= accuracy <= 1.0:
        summary.val_accuracy = float(accuracy)
    else:
        summary.notes.append("damaged metrics.json (val_accuracy)" if "val_accuracy" in metrics
                             else "metrics.json has no val_accuracy")
    cv = metrics.get("cv")
    if isinstance(cv, dict) and is_json_number(cv.get("accuracy")) and is_json_number(cv.get("stderr")):
        summary.cv = float(cv["accuracy"]), float(cv["stderr"])
        summary.folds = cv["folds"] if isinstance(cv.get("folds"), int) and not isinstance(cv["folds"], bool) else None
    examples = metrics.get("examples")
    validated = examples.get("validation") if isinstance(examples, dict) else None
    if isinstance(validated, int) and not isinstance(validated, bool) and validated > 0:
        summary.validated = validated
    if isinstance(metrics.get("data"), str):
        summary.data = data_shown(metrics["data"])
    config = metrics.get("config")
    if isinstance(config, dict):
        try:
            changes = config_changes(config)
        except (TypeError, ValueError, OverflowError):
            summary.notes.append("damaged metrics.json (config)")
        else:
            summary.changes = " ".join(f"{k}={v}" for k, v in changes.items()) or "none"
    elif config is not None:
        summary.notes.append("damaged metrics.json (config)")


def read_run_submissions(entries, summary: RunSummary) -> None:
    """kaggle_submissions.json: any entry means submitted; the last public score is the one shown."""
    if entries is None:
        if "damaged kaggle_submissions.json" in summary.notes:
            summary.submitted = "?"
        return
    if not isinstance(entries, list):
        summary.notes.append("damaged kaggle_submissions.json")
        summary.submitted = "?"
        return
    summary.submitted = "yes" if len(entries) == 1 else f"yes ({len(entries)}x)" if entries else "no"
    for entry in entries:
        score = score_value(entry.get("public_score")) if isinstance(entry, dict) else None
        if score is not None and math.isfinite(score):
            summary.public_score = score


def data_shown(source: str) -> str:
    """The data a run was trained on as a person recognises it: its path (from here when it lies below)."""
    if source == SAMPLE_SOURCE or not source:
        return source or "?"
    path = Path(source)
    try:
        return str(path.relative_to(Path.cwd())) if path.is_absolute() else source
    except ValueError:
        return source


def run_folder_date(folder: Path) -> datetime | None:
    """When the run started, from its id (YYYYmmddTHHMMSSZ-xxxxxx), else when the folder last changed."""
    match = RUN_ID_DATE.match(folder.name)
    if match:
        try:
            return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    try:
        return datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc)
    except OSError:
        return None


def score_value(text) -> float | None:
    """A public score as Kaggle or a record gives it (a string, a number, or empty), or None."""
    try:
        return float(text) if text not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None


def is_json_number(value) -> bool:
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


RANKING = ("accuracy: the run's CV estimate where it has one (those rank first, best first), else its hold-out "
           "accuracy; ± its standard error")


def format_runs_table(summaries: list[RunSummary]) -> str:
    header = ("run", "date (UTC)", "accuracy", "± SE", "measured on", "data", "differs from default", "submitted",
              "public score", "note")
    rows = [(s.run_id, s.date.strftime("%Y-%m-%d %H:%M") if s.date else "?", *estimate(s), s.data, s.changes,
             s.submitted, f"{s.public_score:.5f}" if s.public_score is not None else "-", "; ".join(s.notes))
            for s in summaries]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 8}  # right-aligned so the decimals line up
    lines = []
    for row in [header, *rows]:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines + [RANKING])
