"""The kernel's entry point: find the competition data, train with validation, write the submission.

With no arguments on Kaggle it reads the attached competition data under /kaggle/input and
writes /kaggle/working/submission.csv; --input and --output let it run anywhere.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from .config import config_from_args
from .data import find_kaggle_input, load_folder
from .errors import UserError
from .fileio import PUBLISHED, describe_os_error, replacing_folder
from .flags import KAGGLE_INPUT, KAGGLE_WORKING, KERNEL_PROG, parse_kernel_args
from .interrupts import Terminated, handle_interrupts, interrupt_exit_code
from .pipeline import run_training
from .report import report_lines


def main(argv: list[str] | None = None) -> int:
    if "ipykernel" not in sys.modules:  # a notebook's own interrupt handling must keep working after the cell
        handle_interrupts()
    args = parse_kernel_args(argv)
    try:
        return run_kernel(args)
    except (UserError, OSError) as exc:
        if args.debug:
            raise
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"{KERNEL_PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        kept = "the new outputs are complete" if PUBLISHED else "the output folder is as it was"
        print(f"{KERNEL_PROG}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}; {kept}",
              file=sys.stderr)
        return interrupt_exit_code(exc)


def run_kernel(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    start = time.perf_counter()
    data = load_folder(locate_input(args.input))
    print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
    out = args.output or default_output()
    with replacing_folder(out) as staging:  # the outputs appear together, or the old ones stay
        metrics = run_training(cfg, data, staging, {"load": time.perf_counter() - start})
    for line in report_lines(metrics, out, "output folder", time.perf_counter() - start):
        print(line)
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
        hint = "pass --input with the folder holding them" if given else \
            "on Kaggle, attach the digit-recognizer competition data (Add Input); elsewhere pass --input FOLDER"
        raise UserError(f"{root}: looked in it and every folder below it, and none holds both train.csv and test.csv; {hint}")
    return found


def default_output() -> Path:
    """Kaggle offers the files in /kaggle/working for submission; elsewhere a folder under the current one."""
    on_kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_WORKING.is_dir()
    return KAGGLE_WORKING if on_kaggle else Path("output")

