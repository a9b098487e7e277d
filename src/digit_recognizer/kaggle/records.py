"""Local run folders as the Kaggle commands see them: what to submit, and what was submitted from where.

A run's kaggle_submissions.json is written only by the kit's own `submit` (a file of that name in a
kernel's output is kept under another name by `kernels output`), and every change to it is a
read-modify-write under folder_lock, so that submits side by side each keep their record. A record is
found again by its RecordKey, not by its place in the list.
"""
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError, os_reason
from ..local_io import folder_lock, write_json
from ..invocation import command
from ..run_folders import RUN_ID_PATTERN, published_runs
from ..run_record import SAMPLE_SOURCE, float_sized_int, read_json, read_run, settings_text
from ..runs import score_value

RECORDS_NAME = "kaggle_submissions.json"
ORIGIN_NAME = "origin.json"
FALLBACK_NAME = "unfiled_kaggle_submissions.json"  # where a record goes when its run folder refuses it
# The kit's own records: a kernel's output may not bring files of these names into a run folder.
KIT_RECORDS = (RECORDS_NAME, ORIGIN_NAME)
# A record kept when Kaggle may have the submission but its answer was lost (no answer, a server error,
# an unreadable answer); `submissions` resolves it against Kaggle's list.
UNCONFIRMED = "unconfirmed"
# What this process has had Kaggle do (or may have), for an interrupt's truthful message ("Kaggle has ...").
DONE_AT_KAGGLE: list[str] = []


@dataclass(frozen=True)
class RecordKey:
    """Which record of a run's list is meant: Kaggle's ref when it gave one, else when it was made and
    its message (records are only ever appended, changed or removed under the lock, so no index holds)."""
    submitted_at: str | None
    message: str | None
    ref: object = None

    @classmethod
    def of(cls, record: dict) -> "RecordKey":
        return cls(record.get("submitted_at"), record.get("message"), record.get("ref") or None)

    def matches(self, record: dict) -> bool:
        if self.ref:
            return record.get("ref") == self.ref
        return (not record.get("ref") and record.get("submitted_at") == self.submitted_at
                and record.get("message") == self.message)


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
    with folder_lock(run):
        try:
            read_records(run)
        except UserError:
            aside = run / f"{RECORDS_NAME}.damaged-{utc_now().replace(':', '')}-{os.getpid()}"
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
    """Write a submission's record; never raises. Returns where it went: the run folder's record file,
    else (that write failed after all) a fallback file under the user's state folder, else the record
    itself as text, so that the one line saying Kaggle has it also says what it was."""
    try:
        add_record(run, record)
        return str(run / RECORDS_NAME)
    except (UserError, OSError) as exc:
        problem = str(exc) if isinstance(exc, UserError) else os_reason(exc)
    fallback = fallback_records_path()
    try:
        fallback.parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(fallback.parent):
            kept = read_records(fallback.parent, FALLBACK_NAME)
            write_json(fallback, kept + [{**record, "run": str(run)}])
        return f"{fallback} (not the run folder: {problem})"
    except (UserError, OSError):
        return f"nowhere on disk ({problem}); the record: {json.dumps(record)}"


def fallback_records_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "digit-recognizer" / FALLBACK_NAME


def add_record(run: Path, record: dict) -> None:
    """Append a submission record to the run's list (under the lock: nobody else's is lost)."""
    with folder_lock(run):
        write_json(run / RECORDS_NAME, read_records(run) + [record])


@dataclass
class LocalRecords:
    """The submission records under a --runs folder, as a listing of Kaggle's submissions matches them."""
    by_ref: dict  # Kaggle's ref -> (run, RecordKey)
    by_message: dict  # message -> (run, RecordKey), for records Kaggle gave no ref (the newest kept)
    unconfirmed: list  # [(run, record)]: kept when Kaggle's answer was lost; the listing resolves them
    run_ids: set


def local_index(runs: Path) -> LocalRecords:
    """Submission records by Kaggle ref and by message (records without a ref), and the local run ids."""
    index = LocalRecords({}, {}, [], set())
    for run in published_runs(runs):
        index.run_ids.add(run.name)
        try:
            records = read_records(run)
        except UserError:
            continue
        for record in records:
            if record.get("status") == UNCONFIRMED:
                index.unconfirmed.append((run, record))
            elif record.get("ref"):
                index.by_ref[record["ref"]] = (run, RecordKey.of(record))
            elif record.get("message"):
                index.by_message.setdefault(record["message"], (run, RecordKey.of(record)))
    return index


def find_record(run: Path, key: RecordKey) -> dict | None:
    """The newest record in the run's list that `key` names."""
    try:
        records = read_records(run)
    except UserError:
        return None
    return next((r for r in reversed(records) if key.matches(r)), None)


def update_record(run: Path, key: RecordKey, status: str, public_score: float | None, ref=None) -> bool:
    """Store what Kaggle says about a submission (and its ref, for a record kept without one); True when
    the record changed."""
    with folder_lock(run):
        records = read_records(run)
        record = next((r for r in reversed(records) if key.matches(r)), None)
        if record is None:
            return False
        changes = {"status": status, "public_score": public_score}
        if ref and not record.get("ref"):  # an unconfirmed record, now found in Kaggle's list
            changes["ref"] = ref
        if all(record.get(k) == v for k, v in changes.items()):
            return False
        record.update(changes)
        write_json(run / RECORDS_NAME, records)
    return True


def remove_record(run: Path, key: RecordKey) -> bool:
    """Drop the record `key` names (an unconfirmed one Kaggle's list shows it never received)."""
    with folder_lock(run):
        records = read_records(run)
        kept = [r for r in records if not key.matches(r)]
        if len(kept) == len(records):
            return False
        write_json(run / RECORDS_NAME, kept)
    return True
