"""`digit-recognizer runs`: the local runs side by side, best first: runs with a CV estimate ranked by it
ahead of runs with only a hold-out accuracy, since a few hundred held-out images say less than every image
validated once (a 599-image hold-out's 0.963 scored 0.942 on Kaggle, a 6,000-image CV's 0.953 scored 0.948).

Every run folder is listed, whatever wrote it: an older or newer kit (missing or unknown keys), a
run fetched from a Kaggle kernel (origin.json, maybe no metrics), or a damaged folder, which gets a
note instead of stopping the table.
"""
import argparse
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import UserError
from .run_folders import INCOMPLETE_PREFIX
from .run_record import data_shown, read_json, read_run, settings_text

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
    origin = read_json(folder / "origin.json", summary.notes)
    if isinstance(origin, dict) and origin.get("origin") == "kaggle":
        version = origin.get("version")
        summary.notes.append(f"output of Kaggle kernel version {version}" if isinstance(version, int)
                             else "output of a Kaggle kernel run")
        summary.data = "kaggle"
    elif isinstance(origin, dict) and isinstance(origin.get("origin"), str):
        summary.notes.append(f"origin: {origin['origin']}")
    elif origin is not None:
        summary.notes.append("damaged origin.json")
    run = read_run(folder)
    summary.notes += run.notes
    if run.present:
        summary.val_accuracy, summary.validated = run.val_accuracy, run.validated
        if run.cv is not None:
            summary.cv, summary.folds = (run.cv.accuracy, run.cv.stderr), run.cv.folds
        if run.data is not None:
            summary.data = data_shown(run.data)
        summary.changes = settings_text(run.settings)
    elif not (folder / "origin.json").exists():
        summary.notes.append("no metrics.json (not a finished run?)")
    read_run_submissions(read_json(folder / "kaggle_submissions.json", summary.notes), summary)
    return summary


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
