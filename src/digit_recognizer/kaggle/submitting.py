"""What both ways of submitting share (`submit` a file, `submit --kernel` a kernel version's output), and
`kernels run`'s check of the fetched file: the local checks before anything is uploaded, the daily
limit, and recording the submission and waiting for its score.

It imports neither competition.py nor kernels.py nor code_submission.py, which all import it, so the
imports among those run one way: competition -> code_submission -> kernels -> submitting.
"""
import argparse
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from shlex import quote
from typing import Iterator

from ..errors import UserError
from ..local_io import describe_os_error
from ..interrupt_hold import interrupts_deferred
from ..invocation import command
from ..run_record import SAMPLE_SOURCE
from .client import COMPETITION, KaggleSession, OutcomeUnknown, poll, scrub, wait_settings
from .records import (DONE_AT_KAGGLE, UNCONFIRMED, RecordKey, keep_record, score_value, update_record, utc_now,
                      validation_accuracy)

KAGGLE_TEST_ROWS = 28000


def count_rows(raw: bytes) -> int:
    """Data rows of a CSV: its non-blank lines less the header."""
    return sum(1 for line in raw.split(b"\n") if line.strip()) - 1


def count_test_rows(data: Path) -> int:
    """Rows in --data's test.csv (a folder holding test.csv or test.csv.gz, or Kaggle's zip)."""
    from ..csv_bytes import read_bytes
    from ..local_data import read_zip

    if data.is_file() and data.suffix == ".zip":
        raw, name = read_zip(data, ("test.csv",))["test.csv"], f"{data}:test.csv"
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


def sample_fix() -> str:
    return (f"run '{command('download')}', then '{command('train --data data')}', "
            f"and submit that run")


ROW_COUNT = re.compile(r": has (\d+) rows, expected (\d+) \(one per test image\)$")


def check_file(file: Path, n_rows: int, data: Path | None, run: Path | None) -> list[str]:
    """check_submission's problems; a wrong row count says which test.csv was expected and, for a run's
    file, what data that run was trained on (its metrics.json): what is known, not a guess."""
    from ..submission_check import check_submission

    _, problems = check_submission(file, n_rows)
    source = "the competition's test.csv" if data is None else f"{data}'s test.csv"
    for i, line in enumerate(problems):
        if ROW_COUNT.search(line):
            problems[i] = line.replace("(one per test image)", f"(one per image of {source})") + \
                row_count_cause(file, data, run)
    return problems


def row_count_cause(file: Path, data: Path | None, run: Path | None) -> str:
    """What the run folder says about the data its submission answers, and the command that checks it there."""
    from ..run_record import data_shown, read_run

    saved = read_run(run) if run is not None else None
    trained = saved.data if saved else None
    images = f" ({saved.test_images} test images)" if saved and saved.test_images else ""
    if trained == SAMPLE_SOURCE:
        return f"; its run {run} was trained on the embedded sample{images}; {sample_fix()}"
    if isinstance(trained, str) and trained:
        shown = data_shown(trained)
        here = data is None and Path(trained).exists()  # a kernel's /kaggle/input is not: no command to paste
        check = f": {command('validate ' + quote(str(file)) + ' --data ' + quote(shown))} checks it against " \
                f"that test.csv" if here else ""
        return f"; its run {run} was trained on {shown}{images}{check}"
    return "; --data DIR checks it against the test.csv it answers" if data is None else ""


def refuse_invalid(file: Path, n_rows: int, source: str, data: Path | None, run: Path | None) -> None:
    """Every problem on its own line, then one UserError: an invalid file never reaches Kaggle."""
    problems = check_file(file, n_rows, data, run)
    for line in problems:
        print(f"digit-recognizer: error: {line}", file=sys.stderr)
    if problems:
        raise UserError(f"{file}: not uploaded: {len(problems)} problem(s) above "
                        f"(checked against {n_rows} rows of {source})")


def check_limits(session: KaggleSession) -> None:
    limits = session.call("reading the submission limits", "competition_get_submission_limits", COMPETITION)
    if getattr(limits, "num_allowed_now", None) == 0 and (limits.num_today or limits.num_total):
        raise UserError(f"no submissions left today ({limits.num_today} made today); nothing was uploaded")


def check_wait(args: argparse.Namespace) -> None:
    """--wait's settings, checked before anything is uploaded (a bad one must not fail after Kaggle said yes)."""
    if args.wait:
        wait_settings(args.wait_timeout)


def upload_and_record(session: KaggleSession, what: str, method: str, call_args: tuple, call_kwargs: dict,
                      accepted, run: Path | None, fields: dict) -> dict:
    """Make the submission (the client's `method`) and write its record, with Ctrl-C and SIGTERM held
    from the upload's start until the record is on disk: an accepted submission is never unrecorded.
    accepted(response) raises UserError when Kaggle did not take it. When Kaggle may have it although
    its answer was lost (OutcomeUnknown), an unconfirmed record is kept that `submissions` resolves,
    and the one line says so and how to check. Returns the record."""
    submitted_at = utc_now()
    with interrupts_deferred():
        try:
            response = session.call(what, method, *call_args, **call_kwargs)
        except OutcomeUnknown as exc:
            raise UserError(f"{exc}; {keep_unconfirmed(run, submitted_at, fields, str(exc))}") from None
        accepted(response)
        ref = getattr(response, "ref", None) or None
        record = {"submitted_at": submitted_at, **fields, "ref": ref, "status": "pending", "public_score": None}
        said = "Kaggle has the submission" + (f" (ref {ref})" if ref else "")
        if run is None:
            DONE_AT_KAGGLE.append(f"{said} (do not submit it again); no record was kept (the file is outside any "
                             f"run folder)")
        else:
            record["recorded_in"] = keep_record(run, dict(record))
            DONE_AT_KAGGLE.append(f"{said} (do not submit it again), recorded in {record['recorded_in']}")
    return record


def keep_unconfirmed(run: Path | None, submitted_at: str, fields: dict, problem: str) -> str:
    """Kaggle may have the submission: keep a record saying so (in the run folder), and the words that
    say it and how to check; also what an interrupt arriving now reports."""
    check = f"check '{command('submissions')}' before submitting again"
    if run is None:
        said = f"Kaggle may have taken the submission: {check} (no record was kept: the file is outside any run folder)"
    else:
        record = {"submitted_at": submitted_at, **fields, "ref": None, "status": UNCONFIRMED, "public_score": None,
                  "problem": problem}
        said = (f"Kaggle may have taken the submission: {check}; an unconfirmed record is kept in "
                f"{keep_record(run, record)}, and '{command('submissions')}' settles it")
    DONE_AT_KAGGLE.append(said)
    return said


@contextmanager
def after_acceptance() -> Iterator[None]:
    """Anything failing once Kaggle has said yes is one line that also says Kaggle has the submission
    and where its record is, so that nobody spends another daily submission on it."""
    try:
        yield
    except UserError as exc:
        raise UserError(f"{exc}; {DONE_AT_KAGGLE[-1]}") from None
    except OSError as exc:
        raise UserError(f"{describe_os_error(exc)}; {DONE_AT_KAGGLE[-1]}") from None


def after_submit(session: KaggleSession, args: argparse.Namespace, record: dict, run: Path | None,
                 file: Path) -> int:
    """Say where the record went; with --wait, poll for the public score."""
    with after_acceptance():
        where = record.pop("recorded_in", None)
        if run is None:
            print(f"{file} is not inside a run folder, so no submission record was kept")
        else:
            print(f"recorded in {where}")
        if not args.wait:
            print(f"next: {command('submissions')}  (the public score appears when Kaggle has scored it)")
            return 0
        return await_score(session, args.wait_timeout, record, run)


def await_score(session: KaggleSession, timeout: float, record: dict, run: Path | None) -> int:
    latest = {}

    def check() -> tuple[bool, str]:
        latest["found"] = find_submission(session, record)
        state = status_name(latest["found"]) if latest["found"] else "not listed yet"
        return state in ("complete", "error"), state

    state = poll(check, timeout, "submission", command("submissions"))
    found = latest["found"]
    if run is not None:
        update_record(run, RecordKey.of(record), state, score_value(found.public_score))
    if state == "error":
        print(f"Kaggle could not score the submission: {scrub(found.error_description or 'no reason given', limit=300)}")
        return 1
    accuracy = validation_accuracy(run)
    local = f"local validation accuracy {accuracy:.4f}" if accuracy is not None else "no local validation accuracy"
    print(f"public score: {found.public_score}  ({local})")
    return 0


def find_submission(session: KaggleSession, record: dict):
    for item in list_submissions(session):
        if record["ref"] and item.ref == record["ref"]:
            return item
        if not record["ref"] and same_message(item.description, record["message"]):
            return item  # newest first: the one just made
    return None


SHORTENED_MIN = 40  # a listed description at least this long may be the start of a longer message


def same_message(listed: str | None, message: str | None) -> bool:
    """Whether Kaggle's listed description is the message sent: the listing comes through the gate (one
    scrubbed line), so the message is compared in that form too; a long message Kaggle cut short (its
    start, perhaps with an ellipsis) counts as the same."""
    if not message or not listed:
        return False
    sent, listed = scrub(message), listed.rstrip(".… ")
    return listed == sent.rstrip(".… ") or (len(listed) >= SHORTENED_MIN and sent.startswith(listed))


def list_submissions(session: KaggleSession) -> list:
    return [s for s in session.call("listing your submissions", "competition_submissions", COMPETITION) or [] if s]


def status_name(item) -> str:
    return (getattr(item.status, "name", None) or str(item.status)).rsplit("_", 1)[-1].lower()
