"""The kernel's command line: where Kaggle keeps the data and outputs, and a flag per setting.

Only the standard library is imported up to here, so `--help` and a mistyped flag are answered before
torch and pandas load. A flag given on the command line overrides its setting."""
import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .checks import check_config, ignored_notice
from .config import Config

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
KERNEL_PROG = "digit_recognizer_kernel.py"


def parse_kernel_args(argv: list[str] | None = None, settings: dict | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=KERNEL_PROG, description="Train multinomial logistic regression on "
                                     "Kaggle's Digit Recognizer data, validate it and write submission.csv.")
    parser.add_argument("--input", type=Path, help="the folder holding train.csv and test.csv, or a folder "
                        f"to search below (default: search {KAGGLE_INPUT})")
    parser.add_argument("--output", type=Path, help="where submission.csv, model.pt and metrics.json go "
                        f"(default: {KAGGLE_WORKING} on Kaggle, else ./output)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (default: off)")
    add_config_arguments(parser)
    unknown = sorted(set(settings or {}) - {f.name for f in fields(Config)})
    if unknown:
        parser.error(f"SETTINGS has no option {unknown[0]!r}; the options are those of --help, "
                     f"with _ for - ({', '.join(f.name for f in fields(Config))})")
    # Each setting is read as its flag, so it is checked exactly as the flag is; a flag given after it wins.
    given = []
    for name, value in (settings or {}).items():
        flag = "--" + name.replace("_", "-")
        given += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    if argv is None:  # in a notebook cell sys.argv holds the Jupyter launcher's flags, not ours
        argv = [] if "ipykernel" in sys.modules else sys.argv[1:]
    return parser.parse_args(given + argv)


def weight_decay_value(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, so the CLI and the Kaggle kernel accept the same options."""
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        about = f.metadata["help"]
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=about)
        else:
            kind = weight_decay_value if f.name == "weight_decay" else type(f.default)
            parser.add_argument(flag, type=kind, default=f.default, choices=f.metadata["choices"],
                                help=f"{about} (default: {f.default})")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config the flags make, checked; a flag it will not use is said on stderr, not silently dropped."""
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config)})
    check_config(cfg)
    notice = ignored_notice(cfg)
    if notice:
        print(notice, file=sys.stderr)
    return cfg
