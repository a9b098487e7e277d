"""The competition from the terminal: download, validate, submit, submissions (the kernel's own
commands are in kernels.py; cli.COMMANDS lists them all).

Every step that costs something on Kaggle (a daily submission) is checked locally first; every
Kaggle call goes through client.py (the kaggle package's own KaggleApi, bounded).
"""
import argparse
import os
import shutil
import sys
from shlex import quote
import tempfile
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..errors import UserError
from ..invocation import command
from ..run_record import read_run
from ..runs import runs_flag
from ..errors import os_reason
from ..interrupt_hold import interrupts_deferred
from ..local_io import make_folder
from .client import COMPETITION, VERSION_NUMBER, connect, find_credentials, wait_timeout_flag
from .records import (ORIGIN_NAME, LocalRecords, RecordKey, default_message, find_record, is_run_folder, local_index,
                      prepare_records, read_json_object, remove_record, score_value, submission_target,
                      trained_on_sample, update_record, utc_now)
from .submitting import (after_submit, check_file, check_limits, check_wait, count_rows, expected_rows,
                         list_submissions, refuse_invalid, same_message, sample_fix, status_name, upload_and_record)

DATA_FILES = ("train.csv", "test.csv", "sample_submission.csv")
SUBMIT_FAILED = "Could not submit to competition"  # what the client returns when the upload failed


# ---- download ---------------------------------------------------------------------------------

def cmd_download(args: argparse.Namespace) -> int:
    from ..csv_bytes import TEST_COLUMNS, TRAIN_COLUMNS

    folder: Path = args.to
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; --to takes the folder to put the CSVs in")
    if all((folder / name).is_file() for name in ("train.csv", "test.csv")):
        for name, columns in (("train.csv", TRAIN_COLUMNS), ("test.csv", TEST_COLUMNS)):
            _check_header(folder / name, _first_line(folder / name), ",".join(columns))
        print(f"{folder}: train.csv and test.csv are already there; nothing downloaded")
        print(f"next: {command('train --data ' + quote(str(folder)))}")
        return 0
    session = connect()
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-download-", ignore_cleanup_errors=True) as temp:
        session.call("downloading the competition files", "competition_download_files", COMPETITION,
                     path=temp, force=True, quiet=True, transfer=True)
        files = _competition_files(Path(temp))
    kept = install_as_one(folder, files)
    print(f"{folder}: " + ", ".join(_describe(name, raw) for name, raw in files.items()))
    if kept:
        print(f"kept the earlier {', '.join(kept)} there as {', '.join(kept.values())} (not mixed with the new files)")
    print(f"next: {command('train --data ' + quote(str(folder)))}")
    return 0


def install_as_one(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Put the downloaded files into `folder` as one unit: all written beside it first, then renamed in
    with Ctrl-C held; an earlier file of the same name (an older train.csv) is kept under a new name, so
    nothing is lost and an old file never sits beside new ones. Returns {name: the earlier file's new name}."""
    make_folder(folder, "--to takes the folder to put the CSVs in")
    stage = folder / f".digit-recognizer-download-{os.getpid()}"
    stamp = utc_now().replace(":", "").replace("-", "")[:15]
    kept: dict[str, str] = {}
    moved: list[tuple[Path, Path]] = []
    try:
        stage.mkdir()
        for name, raw in files.items():
            (stage / name).write_bytes(raw)
        with interrupts_deferred():
            try:
                for name in files:
                    if os.path.lexists(folder / name):
                        aside = keep_aside(folder / name, f"{name}.before-download-{stamp}")
                        if aside is not None:
                            kept[name] = aside.name
                            moved.append((folder / name, aside))
                for name in files:
                    moved.append((stage / name, folder / name))
                    os.rename(*moved[-1])
            except OSError:
                for source, target in reversed(moved):  # not at all: put back what had moved
                    with suppress(OSError):
                        os.rename(target, source)
                raise
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the downloaded files there ({os_reason(exc)}); nothing "
                        f"was changed") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return kept


def keep_aside(path: Path, name: str) -> Path | None:
    """Rename `path` to `name` beside it (NAME-2, NAME-3, ... when taken) without ever replacing a file:
    the new name is claimed first by creating it exclusively, so that two downloads at once (in the
    same second) cannot both pick it and the second rename destroy the first kept copy. None when
    `path` went away meanwhile (another download moved it aside: nothing left to keep here)."""
    number = 1
    while True:
        claimed = path.with_name(name if number == 1 else f"{name}-{number}")
        try:
            os.close(os.open(claimed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            number += 1
    try:
        os.replace(path, claimed)  # replaces only the empty file claimed above
    except FileNotFoundError:
        claimed.unlink(missing_ok=True)
        return None
    except OSError:
        claimed.unlink(missing_ok=True)
        raise
    return claimed


def _competition_files(temp: Path) -> dict[str, bytes]:
    """The expected CSVs from what the client downloaded (Kaggle's zip), each checked in full."""
    from ..csv_bytes import PIXEL_LIMITS, TEST_COLUMNS, TRAIN_COLUMNS, TRAIN_LIMITS, parse_table
    from ..submission_check import HEADER
    from ..local_data import read_zip

    archives = sorted(temp.glob("*.zip"))
    if not archives:
        got = ", ".join(p.name for p in temp.iterdir()) or "nothing"
        raise UserError(f"Kaggle sent no zip for {COMPETITION} (got: {got}); run the command again")
    try:
        files = read_zip(archives[0], DATA_FILES, required=("train.csv", "test.csv"))
    except UserError as exc:  # the temporary zip's path means nothing to the user
        raise UserError(f"the {COMPETITION} download from Kaggle: {str(exc).split(': ', 1)[1]}; "
                        f"run the command again") from None
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
                        f"remove the file and run '{command('download')}' again")


def _describe(name: str, raw: bytes) -> str:
    return f"{name} ({count_rows(raw)} rows)"




# ---- validate, submit, submissions ------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    from ..submission_check import HEADER

    file = args.file / "submission.csv" if args.file.is_dir() else args.file  # a run folder will do
    run = args.file if args.file.is_dir() else (file.parent if is_run_folder(file.parent) else None)
    n_rows, source = expected_rows(args.data)
    problems = check_file(file, n_rows, args.data, run)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{file}: valid submission: header {HEADER}, {n_rows} rows (one per image of {source}), "
          f"ImageId 1..{n_rows}, labels 0-9")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    if args.kernel is not None:
        from .code_submission import submit_kernel_version

        if args.target is not None:
            raise UserError(f"submit: {args.target} and --kernel both name what to submit; give one")
        return submit_kernel_version(args)
    file, run = submission_target(args.target, args.runs)
    if trained_on_sample(run):  # before any network call: Kaggle would reject it and count the try
        raise UserError(f"{run}: trained on the embedded sample (1000 test images), which Kaggle would "
                        f"reject; nothing was uploaded: {sample_fix()}")
    credentials = find_credentials()  # no credentials: say so before anything else
    n_rows, source = expected_rows(args.data)
    refuse_invalid(file, n_rows, source, args.data, run)
    message = args.message or default_message(file, run)
    check_wait(args)
    prepare_records(run)  # the record must be writable before Kaggle is asked, not after it said yes
    session = connect(credentials)
    check_limits(session)

    def accepted(response) -> None:
        if not response.message or response.message == SUBMIT_FAILED:
            raise UserError(f"uploading {file}: the upload to Kaggle failed; nothing was submitted, try again")

    record = upload_and_record(session, f"uploading {file}", "competition_submit",
                               (str(file), message, COMPETITION), {"quiet": True, "transfer": True}, accepted, run,
                               {"message": message, "file": file.name})
    print(f"submitted {file} to {COMPETITION}: {message!r}" + (f" (ref {record['ref']})" if record["ref"] else ""))
    return after_submit(session, args, record, run, file)


def cmd_submissions(args: argparse.Namespace) -> int:
    from .leaderboard import rank_of, read_board

    session = connect()
    items = list_submissions(session)
    index = local_index(args.runs)
    for line in settle_unconfirmed(items, index):
        print(line)
    if not items:
        print(f"no submissions to {COMPETITION} yet")
        return 0
    scored = any(score_value(i.public_score) is not None for i in items)
    board, board_problem = read_board(session) if scored else (None, "")
    team = next((i.team_name for i in items if i.team_name), None)
    rows, gaps, updated = [], [], 0
    for item in items:
        state, score = status_name(item), score_value(item.public_score)
        run, where = _local_run(item, index, args.runs)
        if where:
            updated += update_record(*where, state, score)
        cv = cv_estimate(run)
        if cv and score is not None:
            gaps.append((score - cv[0], cv[1]))
        rank = rank_of(board, score, team, session.username) if board and score is not None else None
        date = item.date.strftime("%Y-%m-%d %H:%M") if item.date else ""
        rows.append((date, state, item.public_score or "", str(rank) if rank else "-",
                     f"{cv[0]:.4f}±{cv[1]:.4f}" if cv else "-", run.name if run else "-",
                     kernel_version_of(run, where), (item.description or "")[:60]))
    print_table(("date (UTC)", "status", "public", "rank", "CV ± stderr", "local run", "kernel", "message"), rows)
    if board:
        print(f"rank: the place that public score holds on today's public leaderboard ({len(board)} teams)")
    elif board_problem:
        print(f"rank: unknown ({board_problem})")
    if gaps:
        print(cv_summary(gaps))
    if updated:
        print(f"updated {updated} submission record(s) under {args.runs}")
    return 0


CLOCK_MARGIN = timedelta(minutes=10)  # between this machine's clock and the dates Kaggle lists


def settle_unconfirmed(items: list, index: LocalRecords) -> list[str]:
    """Each unconfirmed record (kept when Kaggle's answer to a submission was lost) set against Kaggle's
    list: the oldest listed submission from its time on with its message that no other record claims
    is the one it made, and the record takes its ref (an ordinary record from then on); when the list
    reaches back past the record's time without one, Kaggle never received it, and the record is
    removed (once it is older than CLOCK_MARGIN: a list made just after may not show it yet). Returns the
    lines saying what was settled."""
    lines, claimed, now = [], set(index.by_ref), datetime.now(timezone.utc)
    for run, record in sorted(index.unconfirmed, key=lambda pair: str(pair[1].get("submitted_at"))):
        key, made = RecordKey.of(record), _utc(record.get("submitted_at"))
        what = f"the upload of {run.name}/{record.get('file', 'submission.csv')} at {record.get('submitted_at')}"
        match = next((item for item in reversed(items) if item.ref not in claimed
                      and same_message(item.description, record.get("message"))
                      and not (made and item.date and _utc(item.date) < made - CLOCK_MARGIN)), None)
        if match is not None:
            claimed.add(match.ref)
            update_record(run, key, status_name(match), score_value(match.public_score), ref=match.ref)
            index.by_ref[match.ref] = (run, RecordKey(key.submitted_at, key.message, match.ref))
            lines.append(f"{what}, whose answer was lost, is on Kaggle (ref {match.ref}); its record is confirmed")
        elif made and made < now - CLOCK_MARGIN and (  # old enough for Kaggle to list it, and the list reaches back
                not items or any(item.date and _utc(item.date) < made - CLOCK_MARGIN for item in items)):
            remove_record(run, key)
            lines.append(f"{what}, whose answer was lost, never reached Kaggle (it is not in the list); its "
                         f"unconfirmed record is removed")
        else:
            lines.append(f"{what}, whose answer was lost, is not in Kaggle's list yet; its record stays unconfirmed")
    return lines


def _utc(value) -> datetime | None:
    """A record's ISO time or a listed date as an aware UTC datetime (None when it is neither)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _local_run(item, index: LocalRecords, runs: Path) -> tuple[Path | None, tuple | None]:
    """The run folder a Kaggle submission came from: by its record (ref or message), else by a run id
    in its description; and where its record is (run, RecordKey), when it has one."""
    where = index.by_ref.get(item.ref) or next(
        (place for message, place in index.by_message.items() if same_message(item.description, message)), None)
    if where:
        return where[0], where
    name = next((w.strip(",") for w in (item.description or "").split() if w.strip(",") in index.run_ids), "")
    return (runs / name if name else None), None


def cv_estimate(run: Path | None) -> tuple[float, float] | None:
    """(accuracy, stderr) of the run's cross-validation, when metrics.json has one."""
    cv = read_run(run).cv if run else None
    return (cv.accuracy, cv.stderr) if cv else None


def cv_summary(gaps: list[tuple[float, float]]) -> str:
    """How far public scores fell from the CV estimates: mean and largest gap, and how many within 2 stderr."""
    mean = sum(g for g, _ in gaps) / len(gaps)
    largest = max((g for g, _ in gaps), key=abs)
    within = sum(1 for g, se in gaps if abs(g) <= 2 * se)
    return (f"CV against public score over {len(gaps)} scored submission(s): public - CV is {mean:+.4f} on "
            f"average, {largest:+.4f} at most; {within} of {len(gaps)} within 2 standard errors")


def kernel_version_of(run: Path | None, where) -> str:
    origin = read_json_object(run / ORIGIN_NAME) if run else {}
    record = (find_record(*where) or {}) if where else {}
    version = record.get("kernel_version") or origin.get("version")
    push = origin.get("push") if isinstance(origin.get("push"), dict) else {}
    if not version or not isinstance(push.get("options"), dict) or not push["options"]:
        return f"v{version}" if version else "-"
    from .kernels import option_flags  # the training options that version was pushed with

    return f"v{version} ({option_flags(push['options'])})"


def print_table(header: tuple, rows: list[tuple]) -> None:
    """Columns padded to their widest cell; the last column (free text) is left unpadded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])


# ---- the command line -------------------------------------------------------------------------

def download_flags(download: argparse.ArgumentParser) -> None:
    download.add_argument("--to", type=Path, default=Path("data"), metavar="DIR",
                          help="folder for train.csv and test.csv (default: data)")
    download.set_defaults(handler=cmd_download)


def validate_flags(validate: argparse.ArgumentParser) -> None:
    validate.add_argument("file", type=Path, metavar="FILE",
                          help="a submission CSV, or a run folder holding submission.csv")
    _data_argument(validate)
    validate.set_defaults(handler=cmd_validate)


def submit_flags(submit: argparse.ArgumentParser) -> None:
    submit.add_argument("target", nargs="?", type=Path, metavar="RUN_DIR|FILE",
                        help="default: the newest run folder's submission.csv")
    submit.add_argument("--kernel", nargs="?", const="", metavar="OWNER/SLUG",
                        help="submit a kernel version's submission.csv where Kaggle made it (default kernel: "
                             "the id in kernel-metadata.json)")
    submit.add_argument("--version", type=VERSION_NUMBER, metavar="N",
                        help="with --kernel: the kernel version (default: the one last pushed)")
    submit.add_argument("-p", "--path", type=Path, default=Path("."), metavar="DIR",
                        help="with --kernel: folder holding kernel-metadata.json and kernel-pushes.json (default: .)")
    submit.add_argument("-m", "--message",
                        help="submission description (default: run id, validation accuracy, config changes)")
    _data_argument(submit)
    runs_flag(submit)
    submit.add_argument("--wait", action="store_true",
                        help="poll until Kaggle has scored it, then print the public score (default: off)")
    wait_timeout_flag(submit, 900, "for the score with --wait")
    submit.set_defaults(handler=cmd_submit)


def submissions_flags(subs: argparse.ArgumentParser) -> None:
    runs_flag(subs)
    subs.set_defaults(handler=cmd_submissions)


def _data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="folder with the test.csv it answers (default: the competition's 28,000 rows)")


