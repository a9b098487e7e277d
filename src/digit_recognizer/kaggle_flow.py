"""The Kaggle workflow from the terminal: download, push, status, output, validate, submit, submissions.

Every step that costs something on Kaggle (a kernel run, a daily submission) is checked locally
first; every Kaggle call goes through kaggle_api (the kaggle package's own KaggleApi, bounded).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .errors import UserError
from .fileio import atomic_write, publish_name, run_folder, write_json, write_text
from .kaggle_api import COMPETITION, KaggleSession, connect, find_credentials
from .kaggle_runs import (ORIGIN_NAME, RECORDS_NAME, add_record, default_message, local_index, score_value,
                          submission_target, update_record, utc_now, validation_accuracy)

KAGGLE_TEST_ROWS = 28000
DATA_FILES = ("train.csv", "test.csv", "sample_submission.csv")
METADATA_NAME = "kernel-metadata.json"
ID_PLACEHOLDER = "YOUR_KAGGLE_USERNAME"
KERNEL_DONE = {"COMPLETE"}
KERNEL_FAILED = {"ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}
POLL_ENV = "DIGIT_RECOGNIZER_POLL_SECONDS"
POLL_FIRST, POLL_MAX, POLL_GROWTH = 10.0, 60.0, 1.5
SUBMIT_FAILED = "Could not submit to competition"  # what the client returns when the upload failed


# ---- download ---------------------------------------------------------------------------------

def cmd_download(args: argparse.Namespace) -> int:
    from .csvtable import TEST_COLUMNS, TRAIN_COLUMNS

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
    from .csvtable import TEST_COLUMNS, TRAIN_COLUMNS, parse_table
    from .data import PIXEL_LIMITS, TRAIN_LIMITS
    from .submission import HEADER

    archives = sorted(temp.glob("*.zip"))
    if not archives:
        raise UserError(f"Kaggle sent no zip for {COMPETITION} (got: {', '.join(p.name for p in temp.iterdir()) or 'nothing'})")
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


# ---- push, status, output ---------------------------------------------------------------------

def cmd_push(args: argparse.Namespace) -> int:
    root: Path = args.path
    find_credentials()  # no credentials: say so before anything else
    metadata = read_metadata(root)
    from .bundle import kernel_staleness

    stale = kernel_staleness(root)
    if stale:
        raise UserError(stale)
    errors, warnings = metadata_problems(metadata, root, args.accelerator)
    for line in warnings:
        print(f"digit-recognizer: warning: {root / METADATA_NAME}: {line}", file=sys.stderr)
    if errors:
        for line in errors[1:]:
            print(f"digit-recognizer: error: {root / METADATA_NAME}: {line}", file=sys.stderr)
        raise UserError(f"{root / METADATA_NAME}: {errors[0]}")
    session = connect()
    kernel = kernel_ref(metadata, session)
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-push-") as stage:
        # The client reads the code file's text itself; only the id differs from the committed metadata.
        staged = {**metadata, "id": kernel, "code_file": str((root / metadata["code_file"]).resolve())}
        write_json(Path(stage) / METADATA_NAME, staged)
        response = session.call("pushing the kernel", "kernels_push", stage, None, args.accelerator)
    problem = _push_problem(response)
    if problem:
        raise UserError(f"Kaggle refused the push of {kernel}: {problem}")
    if metadata["id"] != kernel:
        _record_kernel_id(root / METADATA_NAME, metadata["id"], kernel)
        print(f"{root / METADATA_NAME}: id set to {kernel}")
    version = getattr(response, "version_number", None)
    print(f"pushed {kernel}" + (f" (version {version})" if version else "") + "; Kaggle runs it now")
    print(f"kernel: {response.url or f'https://www.kaggle.com/code/{kernel}'}")
    print("next: digit-recognizer status --wait, then digit-recognizer output")
    return 0


def read_metadata(root: Path) -> dict:
    path = root / METADATA_NAME
    if not path.is_file():
        raise UserError(f"{path}: no such file; run from the project folder that holds {METADATA_NAME} "
                        f"(or pass -p DIR)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise UserError(f"{path}: expected a JSON object with id, title, code_file, ...")
    return metadata


def metadata_problems(metadata: dict, root: Path, accelerator: str | None) -> tuple[list[str], list[str]]:
    """What would make the push fail or the kernel run wrongly (errors), and what is merely risky."""
    from slugify import slugify  # installed with the kaggle client, which slugs titles the same way

    errors, warnings = [], []
    kernel_id, title = metadata.get("id"), metadata.get("title")
    if not isinstance(kernel_id, str) or kernel_id.count("/") != 1 or not all(kernel_id.split("/")):
        errors.append(f"id is {kernel_id!r}; expected 'USERNAME/kernel-slug'")
    elif not isinstance(title, str) or len(title) < 5:
        errors.append(f"title is {title!r}; expected a title of at least 5 characters")
    elif slugify(title) != kernel_id.split("/")[1].lower():
        errors.append(f"id's slug '{kernel_id.split('/')[1]}' does not match the title (Kaggle makes "
                      f"'{slugify(title)}' of it; the push would fail with 'Notebook not found')")
    code_file = metadata.get("code_file")
    if not isinstance(code_file, str) or not (root / code_file).is_file():
        errors.append(f"code_file {code_file!r} is not a file under {root}")
    if metadata.get("language") != "python" or metadata.get("kernel_type") != "script":
        errors.append("expected \"language\": \"python\" and \"kernel_type\": \"script\"")
    if COMPETITION not in (metadata.get("competition_sources") or []):
        errors.append(f"competition_sources lacks \"{COMPETITION}\"; the kernel would find no data")
    if not isinstance(metadata.get("enable_internet"), bool):
        errors.append("set \"enable_internet\" to false explicitly (the client turns it on when omitted)")
    if metadata.get("enable_gpu") and not (metadata.get("machine_shape") or accelerator):
        warnings.append("enable_gpu without machine_shape may get a retired P100; "
                        "set \"machine_shape\": \"NvidiaTeslaT4\" or pass --accelerator")
    if metadata.get("docker_image"):
        warnings.append("docker_image pins an old Kaggle image; remove it to run on the current one")
    return errors, warnings


def kernel_ref(metadata: dict, session: KaggleSession) -> str:
    """The metadata's id with the placeholder owner replaced by the credentials' username."""
    owner, slug = metadata["id"].split("/")
    if owner != ID_PLACEHOLDER:
        return metadata["id"]
    if not session.username:
        raise UserError(f"{METADATA_NAME}: id starts with {ID_PLACEHOLDER} and the credentials name no "
                        f"username; write your Kaggle username there")
    return f"{session.username}/{slug}"


def _push_problem(response) -> str:
    if getattr(response, "error", None):
        return response.error
    for source in ("competition", "dataset", "kernel", "model"):
        invalid = getattr(response, f"invalid_{source}_sources", None)
        if invalid:
            return f"invalid {source} sources: {invalid}"
    return ""


def _record_kernel_id(path: Path, old: str, new: str) -> None:
    """Write the filled-in id into the user's metadata, changing nothing else in the file."""
    text = path.read_text(encoding="utf-8")
    updated = text.replace(json.dumps(old), json.dumps(new), 1)
    if json.loads(updated).get("id") != new:
        updated = json.dumps({**json.loads(text), "id": new}, indent=2) + "\n"
    write_text(path, updated)


def resolve_kernel(args: argparse.Namespace, session: KaggleSession) -> str:
    if args.kernel:
        if args.kernel.count("/") != 1 or not all(args.kernel.split("/")):
            raise UserError(f"--kernel {args.kernel!r}: expected OWNER/SLUG")
        return args.kernel
    metadata = read_metadata(args.path)
    if not isinstance(metadata.get("id"), str) or metadata["id"].count("/") != 1:
        raise UserError(f"{args.path / METADATA_NAME}: id is {metadata.get('id')!r}; expected 'USERNAME/kernel-slug'")
    return kernel_ref(metadata, session)


def kernel_state(session: KaggleSession, kernel: str) -> tuple[str, str]:
    response = session.call(f"reading the status of {kernel}", "kernels_status", kernel)
    status = getattr(response.status, "name", None) or str(response.status)
    return status, (response.failure_message or "")


def cmd_status(args: argparse.Namespace) -> int:
    session = connect()
    kernel = resolve_kernel(args, session)
    latest = {}

    def check() -> tuple[bool, str]:
        latest["status"], latest["failure"] = kernel_state(session, kernel)
        return latest["status"] in KERNEL_DONE | KERNEL_FAILED, latest["status"]

    status = poll(check, args.timeout, kernel) if args.wait else check()[1]
    print(f"{kernel}: {status}" + (f" ({latest['failure']})" if latest["failure"] else ""))
    if status in KERNEL_DONE:
        print("next: digit-recognizer output")
    return 1 if status in KERNEL_FAILED else 0


def poll(check, timeout: float, label: str) -> str:
    """Call check() -> (finished, state) with a growing pause until finished; UserError past `timeout`."""
    start, delay = time.monotonic(), _first_delay()
    shown, tty = None, sys.stderr.isatty()
    while True:
        finished, state = check()
        elapsed = time.monotonic() - start
        if finished:
            if tty and shown:
                print(file=sys.stderr)
            return state
        remaining = timeout - elapsed
        if remaining <= 0:
            raise UserError(f"{label}: still {state} after {elapsed:.0f} s (--timeout {timeout:g}); "
                            f"run the command again to keep waiting")
        pause = min(delay, remaining)
        line = f"{label}: {state} ({elapsed:.0f} s so far; next check in {pause:.0f} s)"
        if tty:
            print("\r" + line.ljust(78), end="", file=sys.stderr, flush=True)
        elif state != shown:
            print(line, file=sys.stderr, flush=True)
        shown = state
        time.sleep(pause)
        delay = min(delay * POLL_GROWTH, POLL_MAX)


def _first_delay() -> float:
    value = os.environ.get(POLL_ENV)
    try:
        return max(float(value), 0.01) if value else POLL_FIRST
    except ValueError:
        raise UserError(f"{POLL_ENV}={value!r}: expected a number of seconds") from None


def cmd_output(args: argparse.Namespace) -> int:
    session = connect()
    kernel = resolve_kernel(args, session)
    status, failure = kernel_state(session, kernel)
    if status not in KERNEL_DONE | KERNEL_FAILED:
        raise UserError(f"{kernel} is {status}; its output comes when it finishes: digit-recognizer status --wait")
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-output-", ignore_cleanup_errors=True) as temp:
        session.call(f"downloading the output of {kernel}", "kernels_output", kernel, temp,
                     force=True, quiet=True, transfer=True)
        fetched = sorted(p for p in Path(temp).rglob("*") if p.is_file())
        if not fetched:
            raise UserError(f"{kernel} has no output files on Kaggle (status {status})")
        with run_folder(args.to) as folder:
            for path in fetched:
                target = folder / path.relative_to(temp)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
            write_json(folder / ORIGIN_NAME, {"origin": "kaggle", "kernel": kernel, "status": status,
                                              "fetched_at": utc_now()})
            final = publish_name(folder)
    names = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file())
    print(f"run folder: {final} (from Kaggle kernel {kernel}, status {status})")
    print("files: " + ", ".join(names))
    if status in KERNEL_FAILED:
        print(f"the kernel failed{f' ({failure})' if failure else ''}; its log is in the run folder")
    submission = final / "submission.csv"
    if submission.is_file():
        from .submission import check_submission

        _, problems = check_submission(submission, None)
        print(f"submission: {submission}" + (f" (problem: {problems[0]})" if problems else ""))
        print(f"next: digit-recognizer submit {final}")
    return 1 if status in KERNEL_FAILED else 0


# ---- validate, submit, submissions ------------------------------------------------------------

def test_row_count(data: Path) -> int:
    """Rows in --data's test.csv (a folder holding test.csv or test.csv.gz, or Kaggle's zip)."""
    from .csvtable import read_bytes

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
    return test_row_count(data), f"{data}'s test.csv"


def cmd_validate(args: argparse.Namespace) -> int:
    from .submission import HEADER, check_submission

    n_rows, source = expected_rows(args.data)
    _, problems = check_submission(args.file, n_rows)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: valid submission: header {HEADER}, {n_rows} rows (one per image of {source}), "
          f"ImageId 1..{n_rows}, labels 0-9")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from .submission import check_submission

    find_credentials()  # no credentials: say so before anything else
    file, run = submission_target(args.target, args.runs)
    n_rows, source = expected_rows(args.data)
    _, problems = check_submission(file, n_rows)
    for line in problems:
        print(f"digit-recognizer: error: {line}", file=sys.stderr)
    if problems:
        raise UserError(f"{file}: not uploaded: {len(problems)} problem(s) above "
                        f"(checked against {n_rows} rows of {source})")
    message = args.message or default_message(file, run)
    session = connect()
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

    state = poll(check, timeout, "submission")
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
    download.add_argument("--to", type=Path, default=Path("data"), help="folder for train.csv and test.csv (default: data)")
    download.set_defaults(handler=cmd_download)

    push = commands.add_parser("push", help="push the committed Kaggle kernel (after checking it is current)")
    _kernel_arguments(push, with_kernel=False)
    push.add_argument("--accelerator", help="Kaggle machine shape, e.g. NvidiaTeslaT4 (overrides the metadata's)")
    push.set_defaults(handler=cmd_push)

    status = commands.add_parser("status", help="the pushed kernel's run status")
    _kernel_arguments(status)
    status.add_argument("--wait", action="store_true", help="poll until the run completes or fails")
    status.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most with --wait (default: 3600)")
    status.set_defaults(handler=cmd_status)

    output = commands.add_parser("output", help="download the kernel's output into a new run folder")
    _kernel_arguments(output)
    output.add_argument("--to", type=Path, default=Path("submissions"), help="where run folders go (default: submissions)")
    output.set_defaults(handler=cmd_output)

    validate = commands.add_parser("validate", help="check a submission file the way Kaggle will need it")
    validate.add_argument("file", type=Path)
    validate.add_argument("--data", type=Path, help="folder with the test.csv it answers (default: Kaggle's 28,000 rows)")
    validate.set_defaults(handler=cmd_validate)

    submit = commands.add_parser("submit", help="validate, then upload a submission to Kaggle and record it")
    submit.add_argument("target", nargs="?", type=Path, metavar="RUN_DIR|FILE", help="default: the newest run folder's submission.csv")
    submit.add_argument("-m", "--message", help="submission description (default: run id, validation accuracy, config changes)")
    submit.add_argument("--data", type=Path, help="folder with the test.csv it answers (default: Kaggle's 28,000 rows)")
    submit.add_argument("--runs", type=Path, default=Path("submissions"), help="where run folders are (default: submissions)")
    submit.add_argument("--wait", action="store_true", help="poll until Kaggle has scored it, then print the public score")
    submit.add_argument("--timeout", type=float, default=900, help="seconds to wait at most with --wait (default: 900)")
    submit.set_defaults(handler=cmd_submit)

    subs = commands.add_parser("submissions", help="your Kaggle submissions, matched to local runs")
    subs.add_argument("--runs", type=Path, default=Path("submissions"), help="where run folders are (default: submissions)")
    subs.set_defaults(handler=cmd_submissions)


def _kernel_arguments(parser: argparse.ArgumentParser, with_kernel: bool = True) -> None:
    parser.add_argument("-p", "--path", type=Path, default=Path("."), help=f"folder holding {METADATA_NAME} (default: .)")
    if with_kernel:
        parser.add_argument("--kernel", help=f"OWNER/SLUG (default: the id in {METADATA_NAME})")
