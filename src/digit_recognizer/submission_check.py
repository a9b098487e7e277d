"""Checking a submission file as Kaggle would, and scoring it: for `score`, `validate`, `submit`, `output`.

The kernel only writes submissions (kernel.write_submission), it never reads one.
"""
from pathlib import Path

import numpy as np

from .csv_bytes import read_bytes
from .errors import UserError
from .csv_diagnosis import count_fields

HEADER = "ImageId,Label"  # Kaggle's submission format, as kernel.write_submission writes it


def check_submission(path: Path, n_rows: int | None) -> tuple[np.ndarray | None, list[str]]:
    """Read a submission; return its labels (in ImageId order) and one line per problem found."""
    try:  # a missing, unreadable or non-regular file (a FIFO, /dev/zero) is a UserError, not a problem list
        text = read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, [f"{path}: not UTF-8 text; expected a CSV with the header '{HEADER}'"]
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None, [f"{path}: the file is empty; expected the header '{HEADER}' and one row per test image"]
    problems = []
    if lines[0].strip() != HEADER:
        problems.append(f"{path}: line 1: header is {lines[0][:60]!r}, expected exactly '{HEADER}'")
    rows = lines[1:]
    miscounted = n_rows is not None and len(rows) != n_rows
    if miscounted:
        problems.append(f"{path}: has {len(rows)} rows, expected {n_rows} (one per test image)")
    ids, labels = _parse_rows(path, rows, problems)
    _check_ids(path, ids, n_rows if n_rows is not None else len(rows), problems, len(ids) == len(rows), miscounted)
    if problems:
        return None, problems
    order = np.argsort(ids)
    return np.array(labels, dtype=np.int64)[order], []


def _parse_rows(path: Path, rows: list[str], problems: list[str]) -> tuple[list[int], list[int]]:
    ids, labels = [], []
    for line_no, row in enumerate(rows, start=2):
        cells = row.split(",")
        where = f"{path}: line {line_no}"
        if len(cells) != 2:
            problems.append(f"{where}: has {count_fields(len(cells))}, expected 2 (ImageId,Label)")
        elif not all(cell.strip() for cell in cells):
            problems.append(f"{where}: {'ImageId' if not cells[0].strip() else 'Label'} is empty")
        elif not _is_digits(cells[0]):
            problems.append(f"{where}: ImageId {cells[0][:20]!r} is not a positive integer")
        elif len(cells[0].strip().lstrip("0")) > 12:  # no int() of 4,300+ digits (Python refuses one)
            problems.append(f"{where}: ImageId {cells[0].strip()[:20]}... is far outside the test images' ImageIds")
        elif not (_is_digits(cells[1]) and len(cells[1].strip().lstrip("0")) <= 1 and int(cells[1]) <= 9):
            problems.append(f"{where}: Label {cells[1][:20]!r} is not an integer 0-9")
        else:
            ids.append(int(cells[0]))
            labels.append(int(cells[1]))
            continue
        if len(problems) >= 20:
            problems.append(f"{path}: stopping after 20 problems")
            break
    return ids, labels


def _is_digits(cell: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other scripts' digits, which int() rejects or Kaggle would."""
    text = cell.strip()
    return text.isascii() and text.isdigit()


def _check_ids(path: Path, ids: list[int], n_rows: int, problems: list[str], all_parsed: bool,
               miscounted: bool = False) -> None:
    seen = set()
    for image_id in ids:
        if image_id in seen:
            problems.append(f"{path}: ImageId {image_id} appears more than once")
            return
        seen.add(image_id)
    outside = sorted(i for i in seen if not 1 <= i <= n_rows)
    if outside:
        problems.append(f"{path}: ImageId {outside[0]} is outside 1..{n_rows}")
    elif len(seen) < n_rows and all_parsed:
        missing = next(i for i in range(1, n_rows + 1) if i not in seen)
        if not (miscounted and missing == len(seen) + 1):  # rows 1..k of n: the row count said it already
            problems.append(f"{path}: ImageId {missing} is missing; expected every ImageId 1..{n_rows}")


def read_submission(path: Path, n_rows: int | None) -> np.ndarray:
    """Labels of a valid submission, or UserError naming the first problem."""
    labels, problems = check_submission(path, n_rows)
    if problems:
        raise UserError(problems[0])
    return labels


def score(submission: Path, solution: Path, solution_name: str | None = None) -> float:
    """The competition metric: the fraction of test images labelled correctly.

    A wrong row count names the solution it was compared with (`solution_name`, default its path).
    """
    truth = read_submission(solution, None)
    predicted, problems = check_submission(submission, len(truth))
    if problems:
        raise UserError(problems[0].replace("(one per test image)", f"(one per row of {solution_name or solution})"))
    return float((predicted == truth).mean())
