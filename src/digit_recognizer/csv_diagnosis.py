"""The slow scan that names the exact line and column of a bad Kaggle CSV.

It runs only after the fast path (core/csvtable.parse_table) has failed, so it is kept out of the kernel.
"""
from .core.errors import UserError


def diagnose(name: str, body: bytes, first_line: int, columns: list[str], limits: dict[str, int]) -> None:
    """Scan line by line for the first problem and raise it; return if none is found."""
    for offset, line in enumerate(body.split(b"\n")):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue  # blank lines are skipped, as pandas does
        where = f"{name}: line {first_line + offset}"
        cells = line.split(b",")
        if len(cells) != len(columns):
            raise UserError(f"{where}: has {count_fields(len(cells))}, expected {len(columns)} ({columns[0]}..{columns[-1]})")
        for column, cell in zip(columns, cells):
            check_cell(f"{where}, column {column}", cell, limits[column])


def check_cell(where: str, cell: bytes, limit: int) -> None:
    what = f"expected an integer 0-{limit}"
    if not cell.strip():
        raise UserError(f"{where}: empty cell, {what}")
    if not cell.isdigit():
        text = cell.decode("utf-8", errors="replace")
        raise UserError(f"{where}: {what}, got {text[:20]!r}")
    if int(cell) > limit:
        raise UserError(f"{where}: {what}, got {int(cell)}")


def count_fields(n: int) -> str:
    return f"{n} field{'' if n == 1 else 's'}"
