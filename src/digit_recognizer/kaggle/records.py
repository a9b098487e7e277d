"""Local run folders as the Kaggle commands see them: what to submit, and what was submitted from where."""
import json
from datetime import datetime, timezone
from pathlib import Path

from ..config_changes import config_changes
from ..core.errors import UserError
from ..core.fileio import write_json
from ..run_folders import RUN_ID_PATTERN, published_runs
from ..runs import SAMPLE_SOURCE, float_sized_int, read_run_json, score_value

RECORDS_NAME = "kaggle_submissions.json"
ORIGIN_NAME = "origin.json"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_run_folder(folder: Path) -> bool:
    return RUN_ID_PATTERN.fullmatch(folder.name) is not None and (
        (folder / "metrics.json").is_file() or (folder / ORIGIN_NAME).is_file())


def submission_target(target: Path | None, runs: Path) -> tuple[Path, Path | None]:
    """The file to submit and the run folder it belongs to (None for a file outside any run)."""
    if target is None:
        with_file = [run for run in published_runs(runs) if (run / "submission.csv").is_file()]
        if not with_file:
            raise UserError(f"{runs}: no run folder with a submission.csv; make one with "
                            f"'digit-recognizer train' or 'digit-recognizer kernels output', or name a FILE to submit")
        return with_file[-1] / "submission.csv", with_file[-1]
    if target.is_dir():
        if not (target / "submission.csv").is_file():
            raise UserError(f"{target / 'submission.csv'}: no such file; name a run folder that holds a submission.csv")
        return target / "submission.csv", target
    if target.is_file():
        return target, target.parent if is_run_folder(target.parent) else None
    raise UserError(f"{target}: no such file or run folder")


def read_json_object(path: Path) -> dict:
    """A JSON object from a run folder, or {} when the file is absent, damaged or not an object."""
    value = read_run_json(path, [])  # the runs table's reader; its notes are not needed here
    return value if isinstance(value, dict) else {}


def validation_accuracy(run: Path | None) -> float | None:
    value = read_json_object(run / "metrics.json").get("val_accuracy") if run else None
    return float(value) if isinstance(value, (int, float)) else None


def default_message(file: Path, run: Path | None) -> str:
    """Run id, validation accuracy and the config that differs from the defaults: enough to find the run again."""
    if run is None:
        return f"file {file.name}"
    metrics = read_json_object(run / "metrics.json")
    kernel = read_json_object(run / ORIGIN_NAME).get("kernel")
    parts = [f"run {run.name}"]
    if file.name != "submission.csv":
        parts.append(f"file {file.name}")
    accuracy = validation_accuracy(run)
    if accuracy is not None:
        parts.append(f"val acc {accuracy:.4f}")
    if isinstance(metrics.get("config"), dict):
        changes = config_changes(metrics["config"])
        parts.append(" ".join(f"{k}={v}" for k, v in changes.items()) if changes else "default config")
    if kernel:
        version = read_json_object(run / ORIGIN_NAME).get("version")
        parts.append(f"Kaggle kernel {kernel}" + (f" version {version}" if version else ""))
    return ", ".join(parts)[:500]




def trained_on_sample(run: Path | None) -> bool:
    return run is not None and read_json_object(run / "metrics.json").get("data") == SAMPLE_SOURCE


def kernel_run(runs: Path, kernel: str, version: int) -> Path | None:
    """The newest run folder fetched from this kernel version that holds its submission.csv."""
    for run in reversed(published_runs(runs)):
        origin = read_json_object(run / ORIGIN_NAME)
        if origin.get("kernel") == kernel and origin.get("version") == version and (run / "submission.csv").is_file():
            return run
    return None


def read_records(run: Path) -> list[dict]:
    path = run / RECORDS_NAME
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text(encoding="utf-8"), parse_int=float_sized_int)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        records = None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path}: not a JSON list of submission records; move it aside to start a new one")
    return records


def add_record(run: Path, record: dict) -> int:
    """Append a submission record to the run's list; return its index there."""
    records = read_records(run) + [record]
    write_json(run / RECORDS_NAME, records)
    return len(records) - 1


def local_index(runs: Path) -> tuple[dict, dict, set]:
    """Submission records by Kaggle ref and by message (records without a ref), and the local run ids."""
    by_ref, by_message, run_ids = {}, {}, set()
    for run in published_runs(runs):
        run_ids.add(run.name)
        try:
            records = read_records(run)
        except UserError:
            continue
        for i, record in enumerate(records):
            if record.get("ref"):
                by_ref[record["ref"]] = (run, i)
            elif record.get("message"):
                by_message.setdefault(record["message"], (run, i))
    return by_ref, by_message, run_ids


def update_record(run: Path, index: int, status: str, public_score: float | None) -> bool:
    """Store what Kaggle says about a submission; True when the record changed."""
    records = read_records(run)
    record = records[index]
    if record.get("status") == status and record.get("public_score") == public_score:
        return False
    record["status"], record["public_score"] = status, public_score
    write_json(run / RECORDS_NAME, records)
    return True
