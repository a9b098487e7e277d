"""The kernel's entry point: find the data, train, write the outputs, show the pictures.

On Kaggle it reads the data attached under /kaggle/input and writes /kaggle/working; --input and
--output let it run anywhere, where it replaces only the files it writes, each one whole.
"""
import os
import sys
import tempfile
import time
from pathlib import Path

from .data import load_folder, locate_input
from .errors import UserError
from .fileio import os_reason
from .flags import KAGGLE_WORKING, KERNEL_PROG, config_from_args, parse_kernel_args
from .pipeline import run_training
from .report import report_lines


def main(argv: list[str] | None = None, settings: dict | None = None) -> int:
    args = parse_kernel_args(argv, settings)
    try:
        cfg = config_from_args(args)
        start = time.perf_counter()
        found, out = locate_input(args.input), args.output or default_output()
        check_output(out)  # before minutes of training, not after them
        data = load_folder(found)
        print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
        metrics = run_training(cfg, data, out, {"load": time.perf_counter() - start})
        print(*report_lines(metrics, out, "output folder", time.perf_counter() - start), sep="\n")
        if "ipykernel" in sys.modules:  # in a notebook each picture appears under the cell that ran it, too
            from IPython.display import Image, display
            for name in metrics.get("pictures", []):
                display(Image(filename=str(out / name)))
        return 0
    except (UserError, OSError) as exc:
        if args.debug:
            raise
        print(f"{KERNEL_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{KERNEL_PROG}: interrupted; each output written so far is complete, the others are as they "
              f"were", file=sys.stderr)
        return 130


def default_output() -> Path:
    """Kaggle offers the files in /kaggle/working for submission; elsewhere a folder under the current one."""
    on_kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_WORKING.is_dir()
    return KAGGLE_WORKING if on_kaggle else Path("output")


def check_output(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # an unnamed file where the OS can: it leaves no trace
    except OSError as exc:
        doing = "write the outputs there" if folder.is_dir() else "create it"
        raise UserError(f"{folder}: cannot {doing} ({os_reason(exc)}); --output takes the folder the outputs "
                        f"go in") from None
