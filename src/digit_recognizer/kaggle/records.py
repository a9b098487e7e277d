"""Local run folders as the Kaggle commands see them: what to submit, and what was submitted from where."""
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..errors import os_reason
from ..local_io import write_json
from ..invocation import command
from ..run_folders import RUN_ID_PATTERN, published_runs
from ..run_record import SAMPLE_SOURCE, float_sized_int, read_json, read_run, settings_text
from ..runs import score_value

RECORDS_NAME = "kaggle_submissions.json"
ORIGIN_NAME = "origin.json"
FALLBACK_NAME = "unfiled_kaggle_submissions.json"  # where a record goes when its run folder refuses it
# What this process has submitted, for an interrupt's truthful message ("Kaggle has ...").
SUBMITTED: list[str] = []


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
                            f"'{command('train')}' or '{command('kernels output')}', or name a FILE to submit")
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
    value = read_json(path, [])  # the runs table's reader; its notes are not needed here
    return value if isinstance(value, dict) else {}


def validation_accuracy(run: Path | None) -> float | None:
    return read_run(run).val_accuracy if run else None


def default_message(file: Path, run: Path | None) -> str:
    """Run id, validation accuracy and the config that differs from the defaults: enough to find the run again."""
    if run is None:
        return f"file {file.name}"
    saved = read_run(run)
    kernel = read_json_object(run / ORIGIN_NAME).get("kernel")
    parts = [f"run {run.name}"]
    if file.name != "submission.csv":
        parts.append(f"file {file.name}")
    if saved.val_accuracy is not None:
        parts.append(f"val acc {saved.val_accuracy:.4f}")
    if saved.settings is not None:
        parts.append(settings_text(saved.settings) if saved.settings else "default config")
    if kernel:
        version = read_json_object(run / ORIGIN_NAME).get("version")
        parts.append(f"Kaggle kernel {kernel}" + (f" version {version}" if version else ""))
    return ", ".join(parts)[:500]




def trained_on_sample(run: Path | None) -> bool:
    return run is not None and read_run(run).data == SAMPLE_SOURCE


def kernel_run(runs: Path, kernel: str, version: int) -> Path | None:
    """The newest run folder fetched from this kernel version that holds its submission.csv."""
    for run in reversed(published_runs(runs)):
        origin = read_json_object(run / ORIGIN_NAME)
        if origin.get("kernel") == kernel and origin.get("version") == version and (run / "submission.csv").is_file():
            return run
    return None


def read_records(run: Path, name: str = RECORDS_NAME) -> list[dict]:
    path = run / name
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text(encoding="utf-8"), parse_int=float_sized_int)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        records = None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path}: not a JSON list of submission records; move it aside to start a new one")
    return records


def prepare_records(run: Path | None) -> None:
    """Before an upload: make sure the run folder will take its record, so an accepted submission is
    never left unrecorded. A damaged record file is kept aside under a new name (not refused: it holds
    the user's history, and a refusal would only invite them to delete it); a folder that cannot be
    written is refused in one line, with nothing uploaded."""
    if run is None:
        return
    path = run / RECORDS_NAME
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: not a file, so the submission record could not be written; nothing was "
                        f"uploaded: move it aside")
    try:
        read_records(run)
    except UserError:
        aside = run / f"{RECORDS_NAME}.damaged-{utc_now().replace(':', '')}"
        try:
            os.rename(path, aside)
        except OSError as exc:
            raise UserError(f"{path}: damaged, and it cannot be moved aside ({os_reason(exc)}); "
                            f"nothing was uploaded") from None
        print(f"digit-recognizer: warning: {path}: not a JSON list of submission records; kept as "
              f"{aside.name}, and a new record list is started", file=sys.stderr)
    probe = run / f".{RECORDS_NAME}.{os.getpid()}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{run}: cannot keep the submission record there ({os_reason(exc)}); nothing was "
                        f"uploaded: make the folder writable, or submit a copy of its submission.csv") from None


def keep_record(run: Path, record: dict) -> str:
    """Write an accepted submission's record; never raises. Returns where it went: the run folder's
    record file, else (that write failed after all) a fallback file under the user's state folder,
    else the record itself as text, so that the one line saying Kaggle has it also says what it was."""
    try:
        add_record(run, record)
        return str(run / RECORDS_NAME)
    except (UserError, OSError) as exc:
        problem = str(exc) if isinstance(exc, UserError) else os_reason(exc)
    fallback = fallback_records_path()
    try:
        fallback.parent.mkdir(parents=True, exist_ok=True)
        kept = read_records(fallback.parent, FALLBACK_NAME)
        write_json(fallback, kept + [{**record, "run": str(run)}])
        return f"{fallback} (not the run folder: {problem})"
    except (UserError, OSError):
        return f"nowhere on disk ({problem}); the record: {json.dumps(record)}"


def fallback_records_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "digit-recognizer" / FALLBACK_NAME


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


def record_index(run: Path, record: dict) -> int | None:
    """Where `record` (as written by keep_record) is in the run's list, newest match first."""
    try:
        records = read_records(run)
    except UserError:
        return None
    for i in range(len(records) - 1, -1, -1):
        if all(records[i].get(k) == record.get(k) for k in ("submitted_at", "message", "ref")):
            return i
    return None


def update_record(run: Path, index: int, status: str, public_score: float | None) -> bool:
    """Store what Kaggle says about a submission; True when the record changed."""
    records = read_records(run)
    record = records[index]
    if record.get("status") == status and record.get("public_score") == public_score:
        return False
    record["status"], record["public_score"] = status, public_score
    write_json(run / RECORDS_NAME, records)
    return True
