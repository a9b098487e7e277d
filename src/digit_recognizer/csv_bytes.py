"""Reading a CSV the user points the local CLI at: its bytes checked before pandas parses them.

The kernel reads Kaggle's own files with its read_csv alone. Locally a CSV may be anything, so
here it must be a regular file (a folder, FIFO or device is one line, not a hang) of at most
MAX_CSV_BYTES, also once unpacked (a gz bomb is refused); UTF-16, a lone carriage return and any byte
but digits, commas and line breaks are refused by name; then pandas' C parser reads the checked rows
with the kernel's settings (uint8), and whenever anything fails the slow scan (csv_diagnosis) names
the exact line and column.
"""
import io
import re
from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["PIXELS", "TEST_COLUMNS", "TRAIN_COLUMNS", "PIXEL_LIMITS", "TRAIN_LIMITS", "MAX_CSV_BYTES", "parse_table",
           "beyond_limits", "read_bytes", "read_raw", "gunzip"]
# Kaggle's columns, as the kernel's read_csv expects them too.
TEST_COLUMNS = [f"pixel{i}" for i in range(784)]
TRAIN_COLUMNS = ["label", *TEST_COLUMNS]
PIXELS = TEST_COLUMNS
PIXEL_LIMITS = {name: 255 for name in PIXELS}  # each column's largest value
TRAIN_LIMITS = {"label": 9, **PIXEL_LIMITS}
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# After the header, a Kaggle CSV holds nothing but digits, commas and line breaks.
CSV_BYTES = b"0123456789,\r\n"
_NOT_CSV_BYTE = re.compile(rb"[^0-9,\r\n]")
_LONE_CR = re.compile(rb"\r(?!\n)")


def parse_table(name: str, raw: bytes, columns: list[str], limits: dict[str, int], diagnose=None) -> np.ndarray:
    """Parse CSV bytes with exactly `columns` into an (rows, columns) uint8 array.

    `limits` maps a column name to its largest allowed value (pixels: 255, label: 9).
    Raises UserError naming the file and what is wrong; `diagnose(name, text, columns, limits)`, when
    given, is called first on a bad header or row to name the exact column, line and cell.
    """
    raw = raw[len(BOM):] if raw.startswith(BOM) else raw

    # Raises the exact culprit where the caller can find it; the kernel keeps the short messages.
    def diagnosed():
        if diagnose:
            diagnose(name, raw, columns, limits)

    body = _body(name, raw, columns, diagnosed)
    if body.translate(None, CSV_BYTES):  # a C-speed scan; the regex only runs to find the culprit
        diagnosed()
        line_no = 2 + body.count(b"\n", 0, _NOT_CSV_BYTE.search(body).start())
        raise UserError(f"{name}: line {line_no}: a character other than a digit, comma or line break; "
                        f"expected integers separated by commas")
    # pandas would split a line at a lone carriage return, making two rows of one.
    lone_cr = b"\r" in body and _LONE_CR.search(body)
    if lone_cr:
        line_no = 2 + body.count(b"\n", 0, lone_cr.start())
        raise UserError(f"{name}: line {line_no}: a carriage return without a line feed; expected lines "
                        f"ending in LF or CRLF")
    try:
        # uint8 makes pandas itself refuse values above 255; any refusal is then located exactly.
        import pandas as pd  # here, not at the top: a run whose parses are cached never pays its import

        table = pd.read_csv(io.BytesIO(body), header=None, dtype=np.uint8, engine="c", na_filter=False)
    except (ValueError, OverflowError) as exc:  # pandas' ParserError is a ValueError
        diagnosed()
        raise UserError(f"{name}: could not be parsed as a Kaggle digit CSV ({exc})") from None
    values = table.to_numpy()
    if beyond_limits(values, columns, limits):
        diagnosed()
        raise UserError(f"{name}: could not be parsed as a Kaggle digit CSV")  # never silently wrong
    return np.ascontiguousarray(values)


def beyond_limits(values: np.ndarray, columns: list[str], limits: dict[str, int]) -> str | None:
    """What in a (rows, columns) table no Kaggle CSV holds ("a label of 200"), or None: the rule for a
    parse and for a parse-cache entry alike."""
    if values.dtype != np.uint8 or values.ndim != 2 or values.shape[1] != len(columns):
        return f"a {values.dtype} table of shape {values.shape}, not uint8 with {len(columns)} columns"
    for index, name in enumerate(columns):
        if limits[name] < 255 and len(values):  # uint8 holds nothing above 255: only the label is looked at
            largest = int(values[:, index].max())
            if largest > limits[name]:
                return f"a {name} of {largest} (at most {limits[name]})"
    return None


def _body(name: str, raw: bytes, columns: list[str], diagnose) -> bytes:
    """Check the header line (file line 1); return the data rows after it."""
    if not raw or raw.isspace():  # not strip(): that copies the whole file
        raise UserError(f"{name}: the file is empty; expected a header line starting "
                        f"'{','.join(columns[:3])},...'")
    end = raw.find(b"\n")
    header_line, body = (raw, b"") if end < 0 else (raw[:end], raw[end + 1:])
    if raw.startswith(UTF16_BOMS) or b"\0" in header_line:  # UTF-16 (Excel's "Unicode text") or UTF-32
        raise UserError(f"{name}: not UTF-8/ASCII text (it looks like UTF-16); save it as UTF-8 "
                        f"(CSV UTF-8 in Excel)")
    if b"\r" in header_line.strip():
        raise UserError(f"{name}: line 1: a carriage return without a line feed; expected lines ending "
                        f"in LF or CRLF")
    if header_line.decode("utf-8", errors="replace").strip().split(",") != columns:
        diagnose()  # which column is missing, extra, repeated or out of place
        raise UserError(f"{name}: header: expected exactly the columns {columns[0]},...,{columns[-1]} "
                        f"in order")
    if not body or body.isspace():
        raise UserError(f"{name}: has a header but no data rows")
    return body


# Kaggle's largest file, train.csv, is 77 MB; a CSV (or what a .gz or zip entry unpacks to) beyond this
# is not one of its files, and reading it whole could exhaust memory (a gz bomb), so it is refused.
MAX_CSV_BYTES = 512 << 20


class NotRegularFile(OSError):
    """A folder, FIFO or device where a CSV file was expected: reading it would fail or never end."""


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is a .gz; at most MAX_CSV_BYTES, from a regular file only."""
    raw = read_raw(path)
    return gunzip(str(path), raw) if path.suffix == ".gz" else raw


def read_raw(path: Path) -> bytes:
    """The bytes on disk of a regular file of at most MAX_CSV_BYTES; one UserError line otherwise."""
    try:
        with open(path, "rb", opener=_open_regular) as handle:
            data = handle.read(MAX_CSV_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except NotRegularFile as exc:
        raise UserError(f"{path}: is {exc.strerror}, not a regular file; expected a CSV file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CSV_BYTES:
        raise UserError(f"{path}: larger than {MAX_CSV_BYTES >> 20} MiB, far beyond Kaggle's largest file "
                        f"(train.csv, 77 MB); expected a Kaggle digit CSV")
    return data


def _open_regular(name, flags):
    import os
    import stat

    fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0))  # opening a FIFO must not wait for a writer
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise NotRegularFile(0, kind)
    return fd


def gunzip(name: str, raw: bytes, limit: int = MAX_CSV_BYTES) -> bytes:
    """A gzip file's contents (every member), refused past `limit` bytes instead of filling memory."""
    import zlib

    out, data = [], raw
    try:
        while data:
            unpack = zlib.decompressobj(wbits=31)
            out.append(unpack.decompress(data, limit + 1 - sum(map(len, out))))
            if sum(map(len, out)) > limit:
                raise UserError(f"{name}: unpacks to more than {limit >> 20} MiB, far beyond Kaggle's "
                                f"largest file (train.csv, 77 MB); expected a gzipped Kaggle digit CSV")
            if not unpack.eof:
                raise EOFError("the gzip data ends early")
            data = unpack.unused_data.lstrip(b"\0")  # the next member, if any (padding allowed)
    except (zlib.error, EOFError) as exc:
        raise UserError(f"{name}: cannot be read (not a complete gzip file: {exc})") from None
    return b"".join(out)
