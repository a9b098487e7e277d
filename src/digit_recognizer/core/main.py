"""The kernel's entry point: find the competition data, train, write the outputs, show the pictures.

With no arguments on Kaggle it reads the attached competition data under /kaggle/input and writes
/kaggle/working/submission.csv; --input and --output let it run anywhere. Each output is written
whole (a temporary file, then a rename) and metrics.json last, so a metrics.json is a finished run's;
a run replaces the files it writes in the output folder and touches nothing else there.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from .data import find_kaggle_input, load_folder
from .errors import UserError
from .fileio import describe_os_error, make_folder, os_reason
from .flags import KAGGLE_INPUT, KAGGLE_WORKING, KERNEL_PROG, config_from_args, parse_kernel_args
from .pipeline import run_training
from .report import report_lines


def main(argv: list[str] | None = None, settings: dict | None = None) -> int:
    args = parse_kernel_args(argv, settings)
    try:
        return run_kernel(args)
    except (UserError, OSError) as exc:
        if args.debug:
            raise
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"{KERNEL_PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{KERNEL_PROG}: interrupted; each output written so far is complete, the others are as they "
              f"were", file=sys.stderr)
        return 130


def run_kernel(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    start = time.perf_counter()
    found = locate_input(args.input)
    out = args.output or default_output()
    check_output(out)  # before the training, not after it
    data = load_folder(found)
    print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
    metrics = run_training(cfg, data, out, {"load": time.perf_counter() - start})
    for line in report_lines(metrics, out, "output folder", time.perf_counter() - start):
        print(line)
    show_pictures(out, metrics.get("pictures", []))
    return 0


def locate_input(given: Path | None) -> Path:
    """--input when it holds the data itself, else the folder below it (default /kaggle/input) that does."""
    if given is not None and not given.exists():
        raise UserError(f"{given}: no such folder; --input takes the folder holding train.csv and test.csv")
    if given is not None and given.is_file():
        raise UserError(f"{given}: --input takes the folder holding train.csv and test.csv, not a file")
    if given is not None and any((given / name).is_file() for name in ("train.csv", "train.csv.gz")):
        return given
    root = given or KAGGLE_INPUT
    found = find_kaggle_input(root)
    if found is None:
        hint = "pass --input with the folder holding them" if given else "on Kaggle, attach the " \
            "digit-recognizer competition data (Add Input); elsewhere pass --input FOLDER"
        raise UserError(f"{root}: looked in it and every folder below it, and none holds both train.csv and "
                        f"test.csv; {hint}")
    return found


def default_output() -> Path:
    """Kaggle offers the files in /kaggle/working for submission; elsewhere a folder under the current one."""
    on_kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_WORKING.is_dir()
    return KAGGLE_WORKING if on_kaggle else Path("output")


def check_output(folder: Path) -> None:
    """The output folder exists and takes files: said before minutes of training, not after them."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: not a folder; --output takes the folder the outputs go in")
    make_folder(folder, "--output takes the folder the outputs go in")
    try:
        with tempfile.TemporaryFile(dir=folder):  # an unnamed file where the OS can: it leaves no trace
            pass
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the outputs there ({os_reason(exc)})") from None


def show_pictures(folder: Path, names: list[str]) -> None:
    """In a notebook, every picture the run wrote appears under the cell that ran it (it stays a file too)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display

        for name in names:
            display(Image(filename=str(folder / name)))
