"""The Kaggle workflow from the terminal: download, validate, submit, submissions (and the kernel's
push, status and output from kaggle_kernel), registered as subcommands by add_commands.

Every step that costs something on Kaggle (a kernel run, a daily submission) is checked locally
first; every Kaggle call goes through kaggle_api (the kaggle package's own KaggleApi, bounded).
"""
import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

from ..core.errors import UserError
from ..core.fileio import atomic_write
from .client import COMPETITION, KaggleSession, connect, find_credentials, poll
from .kernels import add_kernel_commands
from .records import (RECORDS_NAME, add_record, default_message, local_index, score_value,
                          submission_target, update_record, utc_now, validation_accuracy)

KAGGLE_TEST_ROWS = 28000
DATA_FILES = ("train.csv", "test.csv", "sample_submission.csv")
SUBMIT_FAILED = "Could not submit to competition"  # what the client returns when the upload failed


# ---- download ---------------------------------------------------------------------------------

def cmd_download(args: argparse.Namespace) -> int:
    from ..core.csvtable import TEST_COLUMNS, TRAIN_COLUMNS

    folder: Path = args.to
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; --to takes the folder to put the CSVs in")
    if all((folder / name).is_file() for name in ("train.csv", "test.csv")):
        for name, columns in (("train.csv", TRAIN_COLUMNS), ("test.csv", TEST_COLUMNS)):
            _check_header(folder / name, _first_line(folder / name), ",".join(columns))
        print(f"{folder}: train.csv and test.csv are already there; nothing downloaded")
        print(f"use: digit-recognizer train --data {folder}")
        return 0
    session = connect()
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-download-", ignore_cleanup_errors=True) as temp:
        session.call("downloading the competition files", "competition_download_files", COMPETITION,
                     path=temp, force=True, quiet=True, transfer=True)
        files = _competition_files(Path(temp))
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        if not (folder / name).is_file():
            atomic_write(folder / name, lambda target, raw=raw: target.write_bytes(raw))
    print(f"{folder}: " + ", ".join(_describe(name, raw) for name, raw in files.items()))
    print(f"use: digit-recognizer train --data {folder}")
    return 0


def _competition_files(temp: Path) -> dict[str, bytes]:
    """The expected CSVs from what the client downloaded (Kaggle's zip), each checked in full."""
    from ..core.csvtable import TEST_COLUMNS, TRAIN_COLUMNS, parse_table
    from ..core.data import PIXEL_LIMITS, TRAIN_LIMITS
    from ..core.submission import HEADER

    archives = sorted(temp.glob("*.zip"))
    if not archives:
        got = ", ".join(p.name for p in temp.iterdir()) or "nothing"
        raise UserError(f"Kaggle sent no zip for {COMPETITION} (got: {got}); run the command again")
    try:
        with zipfile.ZipFile(archives[0]) as archive:
            members = {Path(n).name: n for n in archive.namelist() if Path(n).name in DATA_FILES}
            files = {name: archive.read(member) for name, member in members.items()}
    except zipfile.BadZipFile:
        raise UserError(f"the {COMPETITION} download is not a readable zip; run the command again") from None
    missing = [name for name in ("train.csv", "test.csv") if name not in files]
    if missing:
        raise UserError(f"the {COMPETITION} zip from Kaggle holds no {' or '.join(missing)}")
    parse_table("downloaded train.csv", files["train.csv"], TRAIN_COLUMNS, TRAIN_LIMITS)
    parse_table("downloaded test.csv", files["test.csv"], TEST_COLUMNS, PIXEL_LIMITS)
    if "sample_submission.csv" in files:
        _check_header(Path("sample_submission.csv"), files["sample_submission.csv"].split(b"\n", 1)[0], HEADER)
    return files


def _first_line(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.readline(1 << 16)


def _check_header(path: Path, line: bytes, expected: str) -> None:
    if line.decode("utf-8", errors="replace").lstrip("\ufeff").strip() != expected:
        raise UserError(f"{path}: line 1 is not the header '{expected[:40]}...' of Kaggle's {path.name}; "
                        f"remove the file and run 'digit-recognizer download' again")


def _describe(name: str, raw: bytes) -> str:
    return f"{name} ({count_rows(raw)} rows)"


def count_rows(raw: bytes) -> int:
    """Data rows of a CSV: its non-blank lines less the header."""
    return sum(1 for line in raw.split(b"\n") if line.strip()) - 1


# ---- validate, submit, submissions ------------------------------------------------------------

def count_test_rows(data: Path) -> int:
    """Rows in --data's test.csv (a folder holding test.csv or test.csv.gz, or Kaggle's zip)."""
    from ..core.csvtable import read_bytes

    if data.is_file() and data.suffix == ".zip":
        try:
            with zipfile.ZipFile(data) as archive:
                member = next((n for n in archive.namelist() if Path(n).name == "test.csv"), None)
                if member is None:
                    raise UserError(f"{data}: the zip holds no test.csv")
                raw, name = archive.read(member), f"{data}:test.csv"
        except zipfile.BadZipFile:
            raise UserError(f"{data}: not a readable zip file") from None
    elif data.is_dir():
        path = next((data / n for n in ("test.csv", "test.csv.gz") if (data / n).is_file()), data / "test.csv")
        raw, name = read_bytes(path), str(path)
    else:
        raise UserError(f"{data}: no such folder; --data takes the folder holding test.csv")
    rows = count_rows(raw)
    if rows < 1:
        raise UserError(f"{name}: has no data rows")
    return rows


def expected_rows(data: Path | None) -> tuple[int, str]:
    if data is None:
        return KAGGLE_TEST_ROWS, "the competition's test.csv"
    return count_test_rows(data), f"{data}'s test.csv"


def cmd_validate(args: argparse.Namespace) -> int:
    from ..core.submission import HEADER
    from ..submission_check import check_submission

    file = args.file / "submission.csv" if args.file.is_dir() else args.file  # a run folder will do
    n_rows, source = expected_rows(args.data)
    _, problems = check_submission(file, n_rows)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{file}: valid submission: header {HEADER}, {n_rows} rows (one per image of {source}), "
          f"ImageId 1..{n_rows}, labels 0-9")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from ..submission_check import check_submission

    credentials = find_credentials()  # no credentials: say so before anything else
    file, run = submission_target(args.target, args.runs)
    n_rows, source = expected_rows(args.data)
    _, problems = check_submission(file, n_rows)
    for line in problems:
        print(f"digit-recognizer: error: {line}", file=sys.stderr)
    if problems:
        raise UserError(f"{file}: not uploaded: {len(problems)} problem(s) above "
                        f"(checked against {n_rows} rows of {source})")
    message = args.message or default_message(file, run)
    session = connect(credentials)
    limits = session.call("reading the submission limits", "competition_get_submission_limits", COMPETITION)
    if getattr(limits, "num_allowed_now", None) == 0 and (limits.num_today or limits.num_total):
        raise UserError(f"no submissions left today ({limits.num_today} made today); nothing was uploaded")
    submitted_at = utc_now()
    response = session.call(f"uploading {file}", "competition_submit", str(file), message, COMPETITION,
                            quiet=True, transfer=True)
    if not response.message or response.message == SUBMIT_FAILED:
        raise UserError(f"uploading {file}: the upload to Kaggle failed; nothing was submitted, try again")
    record = {"submitted_at": submitted_at, "message": message, "ref": response.ref or None,
              "file": file.name, "status": "pending", "public_score": None}
    print(f"submitted {file} to {COMPETITION}: {message!r}" + (f" (ref {response.ref})" if response.ref else ""))
    index = None
    if run is not None:
        index = add_record(run, record)
        print(f"recorded in {run / RECORDS_NAME}")
    else:
        print(f"{file} is not inside a run folder, so no submission record was kept")
    if not args.wait:
        print("next: digit-recognizer submissions (the public score appears when Kaggle has scored it)")
        return 0
    return _await_score(session, args.timeout, record, run, index)


def _await_score(session: KaggleSession, timeout: float, record: dict, run: Path | None, index: int | None) -> int:
    latest = {}

    def check() -> tuple[bool, str]:
        latest["found"] = _find_submission(session, record)
        state = _status_name(latest["found"]) if latest["found"] else "not listed yet"
        return state in ("complete", "error"), state

    state = poll(check, timeout, "submission", "digit-recognizer submissions (it is submitted: do not submit it again)")
    found = latest["found"]
    if run is not None:
        update_record(run, index, state, score_value(found.public_score))
    if state == "error":
        print(f"Kaggle could not score the submission: {found.error_description or 'no reason given'}")
        return 1
    accuracy = validation_accuracy(run)
    local = f"local validation accuracy {accuracy:.4f}" if accuracy is not None else "no local validation accuracy"
    print(f"public score: {found.public_score}  ({local})")
    return 0


def _find_submission(session: KaggleSession, record: dict):
    for item in _list_submissions(session):
        if record["ref"] and item.ref == record["ref"]:
            return item
        if not record["ref"] and item.description == record["message"]:
            return item  # newest first: the one just made
    return None


def _list_submissions(session: KaggleSession) -> list:
    return [s for s in session.call("listing your submissions", "competition_submissions", COMPETITION) or [] if s]


def _status_name(item) -> str:
    return (getattr(item.status, "name", None) or str(item.status)).rsplit("_", 1)[-1].lower()


def cmd_submissions(args: argparse.Namespace) -> int:
    session = connect()
    items = _list_submissions(session)
    if not items:
        print(f"no submissions to {COMPETITION} yet")
        return 0
    by_ref, by_message, run_ids = local_index(args.runs)
    rows, updated = [], 0
    for item in items:
        state, score = _status_name(item), score_value(item.public_score)
        where = by_ref.get(item.ref) or by_message.get(item.description)
        if where:
            updated += update_record(*where, state, score)
            run = where[0].name
        else:
            run = next((word.strip(",") for word in (item.description or "").split() if word.strip(",") in run_ids), "")
        date = item.date.strftime("%Y-%m-%d %H:%M") if item.date else ""
        rows.append((date, state, item.public_score or "", run or "-", (item.description or "")[:60]))
    header = ("date (UTC)", "status", "public", "local run", "message")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[4])
    if updated:
        print(f"updated {updated} submission record(s) under {args.runs}")
    return 0


# ---- the command line -------------------------------------------------------------------------

def add_commands(commands) -> None:
    download = commands.add_parser("download", help="download the competition's CSVs from Kaggle (once)")
    download.add_argument("--to", type=Path, default=Path("data"),
                          help="folder for train.csv and test.csv (default: data)")
    download.set_defaults(handler=cmd_download)

    add_kernel_commands(commands)

    validate = commands.add_parser("validate", help="check a submission file the way Kaggle will need it")
    validate.add_argument("file", type=Path, metavar="FILE",
                          help="a submission CSV, or a run folder holding submission.csv")
    _data_argument(validate)
    validate.set_defaults(handler=cmd_validate)

    submit = commands.add_parser("submit", help="validate, then upload a submission to Kaggle and record it")
    submit.add_argument("target", nargs="?", type=Path, metavar="RUN_DIR|FILE",
                        help="default: the newest run folder's submission.csv")
    submit.add_argument("-m", "--message",
                        help="submission description (default: run id, validation accuracy, config changes)")
    _data_argument(submit)
    _runs_argument(submit)
    submit.add_argument("--wait", action="store_true",
                        help="poll until Kaggle has scored it, then print the public score")
    submit.add_argument("--timeout", type=float, default=900, help="seconds to wait at most with --wait (default: 900)")
    submit.set_defaults(handler=cmd_submit)

    subs = commands.add_parser("submissions", help="your Kaggle submissions, matched to local runs")
    _runs_argument(subs)
    subs.set_defaults(handler=cmd_submissions)


def _data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path,
                        help="folder with the test.csv it answers (default: the competition's 28,000 rows)")


def _runs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("submissions"),
                        help="where run folders are (default: submissions)")
