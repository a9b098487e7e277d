"""Property: any CSV either parses to exactly the right uint8 array or raises the kit's UserError.

Hypothesis writes small tables, mostly valid, with malformed cells (empty, signed, decimal, NaN,
hexadecimal, full-width digits, overlong digit strings...), wrong headers, ragged rows, and random
BOM / CRLF / blank-line / final-newline choices, then calls csv_bytes.parse_table (the local CLI's
strict reader) on the bytes. An independent oracle says what the result must be. Any other exception
fails the test. The kernel's lean read_csv reads the same file: it may accept what the strict
reader refuses (" 5", "+3", "1.0" are numbers to pandas), but it raises nothing but UserError, never
returns a table of the wrong width or with a value out of range, and reads a valid table exactly.
"""
import re
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from digit_recognizer import kernel
from digit_recognizer.csv_bytes import TEST_COLUMNS, TRAIN_COLUMNS, parse_table
from digit_recognizer.csv_diagnosis import diagnose
from digit_recognizer.errors import UserError

NAME = "fuzz/train.csv"
EXAMPLES = 400
MALFORMED = ["", " ", " 5", "5 ", "\t5", "-1", "-0", "+3", "256", "1000", "1.5", "1.0", "1e2", "nan", "NaN",
             "abc", "0x1", "\uff11", "\u0663", "\u00b2", '"5"', "'5'", ";", "5;6", "\x00", "\xa0" + "7",
             "9" * 30, "0" * 30 + "7", "2147483648", "4294967297", "-2147483649"]
# Cells never hold ',' or line breaks here: those change the table's shape, which `shape` below varies.
VALID = st.one_of(st.sampled_from(["0", "9", "255", "0" * 30 + "7"]), st.integers(0, 9).map(lambda v: "00" + str(v)))
TOKENS = st.one_of(st.integers(0, 300).map(str), VALID,
                   st.sampled_from(MALFORMED),
                   st.text(st.characters(blacklist_characters=",\r\n", blacklist_categories=("Cs",)), max_size=4))
HEADER_EDITS = ["none", "none", "none", "drop", "duplicate", "rename", "swap", "extra", "case", "space", "empty"]
counts = Counter()


def plain_int(token: str, limit: int) -> bool:
    return re.fullmatch(r"[0-9]+", token) is not None and int(token) <= limit


def limit_of(column: str) -> int:
    return 9 if column == "label" else 255


@st.composite
def tables(draw):
    """(raw bytes, columns, expected array or None, cells any good message may name)."""
    full = draw(st.sampled_from([TRAIN_COLUMNS, TEST_COLUMNS]))
    columns = full if draw(st.booleans()) and draw(st.booleans()) else full[:draw(st.integers(2, 6))]
    limits = {c: limit_of(c) for c in columns}
    broken = draw(st.booleans())  # else only valid variations, so that half the tables should parse
    n_rows = draw(st.integers(0 if broken else 1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    maxima = np.array([limits[c] for c in columns])
    grid = [[str(v) for v in row] for row in rng.integers(0, maxima + 1, size=(n_rows, len(columns)))]
    for _ in range(draw(st.integers(0, 3)) if n_rows else 0):
        row, column = draw(st.integers(0, n_rows - 1)), draw(st.integers(0, len(columns) - 1))
        grid[row][column] = draw(TOKENS if broken else VALID)

    header, header_ok = edit_header(draw, columns) if broken else (columns, True)
    ragged = draw(st.integers(-1, n_rows - 1)) if n_rows and broken else -1  # a row with one cell too few or many
    if ragged >= 0:
        row = grid[ragged]
        grid[ragged] = row[:-1] if draw(st.booleans()) else row + [str(draw(st.integers(0, 9)))]
        ragged = ragged if grid[ragged] != [""] else -1  # what is left is a blank line, which is skipped

    endings = st.sampled_from(["\n", "\n", "\r\n"])
    lines = [(",".join(header), draw(endings))]
    for row in grid:
        if draw(st.integers(0, 9)) == 0:
            lines.append(("", draw(endings)))  # a blank line: skipped
        lines.append((",".join(row), draw(endings)))
    lone_cr = broken and len(lines) > 2 and draw(st.integers(0, 14)) == 0
    if lone_cr:  # an old-Mac line break inside the body
        index = draw(st.integers(1, len(lines) - 2))
        lines[index] = (lines[index][0], "\r")
    if draw(st.booleans()):
        lines.append(("", draw(endings)))
    text = "".join(line + end for line, end in lines)
    if draw(st.booleans()):
        text = text[:-len(lines[-1][1])]  # no final line break
    raw = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")

    rows = [(number, line) for number, (line, _) in enumerate(lines[1:], start=2) if line != ""]
    bad_cells = set()
    for number, line in rows:
        cells = line.split(",")
        if len(cells) == len(columns):
            bad_cells |= {(number, c) for c, cell in zip(columns, cells) if not plain_int(cell, limits[c])}
    shape_ok = header_ok and rows and ragged < 0 and not lone_cr
    if shape_ok and not bad_cells:
        expected = np.array([[int(cell) for cell in line.split(",")] for _, line in rows], dtype=np.uint8)
        return raw, columns, limits, expected, set()
    return raw, columns, limits, None, bad_cells if header_ok and rows and ragged < 0 and not lone_cr else set()


def edit_header(draw, columns):
    """The header line to write, and whether it is exactly the expected one."""
    header = list(columns)
    edit = draw(st.sampled_from(HEADER_EDITS))
    at = draw(st.integers(0, len(columns) - 1))
    if edit == "drop":
        del header[at]
    elif edit == "duplicate":
        header[at] = header[(at + 1) % len(header)]
    elif edit == "rename":
        header[at] = draw(st.sampled_from(["pixel", "Label", "pixel784", "id", "x"]))
    elif edit == "swap":
        other = (at + 1) % len(header)
        header[at], header[other] = header[other], header[at]
    elif edit == "extra":
        header.insert(at, draw(st.sampled_from(["", "ImageId", "pixel999"])))
    elif edit == "case":
        header[at] = header[at].upper()
    elif edit == "space":
        header[at] = " " + header[at]
    elif edit == "empty":
        header = []
    # Spaces around the whole header line are ignored, as around any line.
    return header, ",".join(header).strip().split(",") == list(columns)


def check_one(table, file: Path) -> None:
    """The strict parse of the bytes, then the kernel's of the file."""
    check_parse(table, lambda raw, columns, limits: parse_table(NAME, raw, columns, limits, diagnose=diagnose))
    file.write_bytes(table[0])
    check_kernel_parse(table, file)


def check_kernel_parse(table, file: Path) -> None:
    raw, columns, limits, expected, _ = table
    exact_header = raw.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r") == ",".join(columns).encode()
    try:
        result = kernel.read_csv(file, columns)
    except kernel.UserError as exc:
        message = str(exc)
        assert message.startswith(f"{file}: ") and "\n" not in message and "\r" not in message, message
        assert expected is None or not exact_header, f"valid table rejected by the kernel: {message}"
        counts["kernel rejected"] += 1
        return
    assert result.dtype == np.uint8 and result.ndim == 2 and result.shape[1] == len(columns) and len(result)
    assert (result <= np.array([limits[c] for c in columns])).all()
    if expected is not None:
        np.testing.assert_array_equal(result, expected)
    counts["kernel parsed"] += 1


def check_parse(table, parse) -> None:
    raw, columns, limits, expected, bad_cells = table
    try:
        result = parse(raw, columns, limits)
    except UserError as exc:
        message = str(exc)
        assert expected is None, f"valid table rejected: {message}"
        assert message.startswith(NAME + ":"), message
        assert "\n" not in message and "\r" not in message, message
        if bad_cells:  # only cells are wrong: the message points at one of them
            assert any(f"line {line}, column {column}:" in message for line, column in bad_cells), message
        counts["rejected"] += 1
        return
    assert expected is not None, f"malformed table accepted: {raw[:300]!r}"
    assert result.dtype == np.uint8 and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)
    counts["parsed"] += 1


def test_parse_table_never_fails_unexpectedly(tmp_path: Path):
    counts.clear()
    property_test = settings(max_examples=EXAMPLES, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(
        given(tables())(lambda table: check_one(table, tmp_path / "train.csv")))
    property_test()
    total = counts["parsed"] + counts["rejected"]
    print(f"\nfuzz: {total} examples ran, each parsed strictly ({counts['parsed']} parsed exactly, "
          f"{counts['rejected']} rejected with UserError) and by the kernel ({counts['kernel parsed']} parsed, "
          f"{counts['kernel rejected']} rejected)")
    assert total >= EXAMPLES // 2 and counts["parsed"] > EXAMPLES // 5 and counts["rejected"] > EXAMPLES // 5
    assert counts["kernel parsed"] > EXAMPLES // 5 and counts["kernel rejected"] > EXAMPLES // 10
