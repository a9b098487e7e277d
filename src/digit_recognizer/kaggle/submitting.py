"""What both ways of submitting share (`submit` a file, `submit --kernel` a kernel version's output), and
`kernels run`'s check of the fetched file: the local checks before anything is uploaded, the daily
limit, and recording the submission and waiting for its score.

It imports neither competition.py nor kernels.py nor code_submission.py, which all import it, so the
imports among those run one way: competition -> code_submission -> kernels -> submitting.
"""
import argparse
import re
import sys
from pathlib import Path

from ..core.errors import UserError
from .client import COMPETITION, KaggleSession, poll
from .records import RECORDS_NAME, add_record, score_value, trained_on_sample, update_record, validation_accuracy

KAGGLE_TEST_ROWS = 28000


def count_rows(raw: bytes) -> int:
    """Data rows of a CSV: its non-blank lines less the header."""
    return sum(1 for line in raw.split(b"\n") if line.strip()) - 1


def count_test_rows(data: Path) -> int:
    """Rows in --data's test.csv (a folder holding test.csv or test.csv.gz, or Kaggle's zip)."""
    from ..core.csvtable import read_bytes
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


SAMPLE_FIX = "run 'digit-recognizer download', then 'digit-recognizer train --data data', and submit that run"
ROW_COUNT = re.compile(r": has (\d+) rows, expected (\d+) \(one per test image\)$")


def check_file(file: Path, n_rows: int, data: Path | None, run: Path | None) -> list[str]:
    """check_submission's problems; a wrong row count against Kaggle's test set names its likely cause."""
    from ..submission_check import check_submission

    _, problems = check_submission(file, n_rows)
    if data is not None:
        return problems
    sample = trained_on_sample(run)
    for i, line in enumerate(problems):
        counted = ROW_COUNT.search(line)
        if counted and (sample or int(counted.group(1)) < n_rows):
            cause = "this run was trained on the embedded sample" if sample else \
                "likely a run on the embedded sample (its test.csv has 1000 images)"
            problems[i] = f"{line}: {cause}; {SAMPLE_FIX}"
    return problems


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


def after_submit(session: KaggleSession, args: argparse.Namespace, record: dict, run: Path | None,
                 file: Path) -> int:
    """Record the submission in its run folder; with --wait, poll for the public score."""
    index = None
    if run is not None:
        index = add_record(run, record)
        print(f"recorded in {run / RECORDS_NAME}")
    else:
        print(f"{file} is not inside a run folder, so no submission record was kept")
    if not args.wait:
        print("next: digit-recognizer submissions (the public score appears when Kaggle has scored it)")
        return 0
    return await_score(session, args.timeout, record, run, index)


def await_score(session: KaggleSession, timeout: float, record: dict, run: Path | None, index: int | None) -> int:
    latest = {}

    def check() -> tuple[bool, str]:
        latest["found"] = find_submission(session, record)
        state = status_name(latest["found"]) if latest["found"] else "not listed yet"
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


def find_submission(session: KaggleSession, record: dict):
    for item in list_submissions(session):
        if record["ref"] and item.ref == record["ref"]:
            return item
        if not record["ref"] and item.description == record["message"]:
            return item  # newest first: the one just made
    return None


def list_submissions(session: KaggleSession) -> list:
    return [s for s in session.call("listing your submissions", "competition_submissions", COMPETITION) or [] if s]


def status_name(item) -> str:
    return (getattr(item.status, "name", None) or str(item.status)).rsplit("_", 1)[-1].lower()
