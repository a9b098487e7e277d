"""The slow scan that names the exact line and column of a bad Kaggle CSV.

It runs only after the fast path (csv_bytes.parse_table) has failed, so it is kept out of the kernel.
"""
from .errors import UserError


def diagnose(name: str, text: bytes, columns: list[str], limits: dict[str, int]) -> None:
    """Check the header, then scan line by line for the first problem and raise it; return if none is found.

    `text` is the whole file after any byte order mark.
    """
    header_line, _, body = text.partition(b"\n")
    problem = header_problem(header_line.decode("utf-8", errors="replace").strip().split(","), columns)
    if problem:
        raise UserError(f"{name}: header: {problem}")
    for offset, line in enumerate(body.split(b"\n")):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue  # blank lines are skipped, as pandas does
        where = f"{name}: line {offset + 2}"  # the body starts on line 2
        cells = line.split(b",")
        if len(cells) != len(columns):
            raise UserError(f"{where}: has {count_fields(len(cells))}, expected {len(columns)} ({columns[0]}..{columns[-1]})")
        for column, cell in zip(columns, cells):
            check_cell(f"{where}, column {column}", cell, limits[column])


def header_problem(header: list[str], columns: list[str]) -> str:
    """Describe how `header` differs from `columns`, or return '' when they match."""
    if header == columns:
        return ""
    seen = set()
    for name in header:
        if name in seen:
            return f"column {name!r} appears more than once"
        seen.add(name)
    missing = [c for c in columns if c not in seen]
    extra = [h for h in header if h not in set(columns)]
    if missing and not extra:
        return f"missing column{'s' if len(missing) > 1 else ''} {_names(missing)}"
    if extra and not missing:
        return f"unexpected column{'s' if len(extra) > 1 else ''} {_names(extra)}; expected exactly {_names(columns)}"
    if missing and extra:
        return f"unexpected column {_names(extra)} where {_names(missing)} was expected"
    position = next(i for i, (h, c) in enumerate(zip(header, columns)) if h != c)
    return f"column {position + 1} is {header[position]!r}, expected {columns[position]!r} (columns out of order)"


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n[:40]) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_cell(where: str, cell: bytes, limit: int) -> None:
    what = f"expected an integer 0-{limit}"
    if not cell.strip():
        raise UserError(f"{where}: empty cell, {what}")
    if not cell.isdigit():
        text = cell.decode("utf-8", errors="replace")
        raise UserError(f"{where}: {what}, got {text[:20]!r}")
    if len(cell.lstrip(b"0")) > len(str(limit)) or int(cell) > limit:  # no int() of 4,300+ digits
        shown = cell.decode()
        raise UserError(f"{where}: {what}, got {shown if len(shown) <= 20 else shown[:20] + '...'}")


def count_fields(n: int) -> str:
    return f"{n} field{'' if n == 1 else 's'}"
