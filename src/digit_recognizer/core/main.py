"""The kernel's entry point: find the data, train, write the outputs, show the pictures.

On Kaggle from /kaggle/input to /kaggle/working; elsewhere from --input to --output, where it replaces
only the files it writes, each one whole."""
import sys
import time

from .data import load_folder
from .errors import UserError
from .flags import KERNEL_PROG, config_from_args, parse_kernel_args
from .paths import check_output, default_output, locate_input
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
