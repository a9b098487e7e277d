"""The `digit-recognizer` command: train, predict and score (plus the Kaggle workflow)."""
import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .core.config import add_config_arguments, config_from_args
from .core.errors import UserError

PROG = "digit-recognizer"


def cmd_train(args: argparse.Namespace) -> int:
    from .core.data import find_kaggle_input
    from .local_data import load_data
    from .core.split import stratified_split

    cfg = config_from_args(args)
    if cfg.device == "cuda":  # say so before the data is parsed, not after
        from .core.train import resolve_device
        resolve_device(cfg.device)
    if args.out.exists() and not args.out.is_dir():  # before the data is parsed, not after
        raise UserError(f"{args.out}: not a folder; --out takes the folder that run folders go in")
    data_dir = args.data or find_kaggle_input()
    clock = time.perf_counter()
    data = load_data(data_dir, cache=not args.no_cache)
    print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
    stratified_split(data.train_labels, cfg.val_fraction, cfg.seed)  # a split that cannot be made: say so now
    # torch is imported only now, so that a bad flag or file is reported without its start-up cost.
    from .run_folders import publish_name, run_folder
    from .core.pipeline import run_training
    from .core.report import report_lines

    with run_folder(args.out) as temp:
        metrics = run_training(cfg, data, temp, load_seconds=time.perf_counter() - clock)
        final = publish_name(temp)
    for line in report_lines(metrics, final, "run folder", time.perf_counter() - clock):
        print(line)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .local_data import load_test_images
    from .saved_model import load_model
    from .core.submission import write_submission
    from .core.train import predict, resolve_device, to_device

    out = args.out or args.model.parent / "predict-submission.csv"
    if out.exists() and not args.force:  # before any work: nothing earlier is overwritten by surprise
        raise UserError(f"{out}: already exists; pass --out with a new name or --force to replace it")
    model, _ = load_model(args.model)
    device = resolve_device(args.device)
    images = load_test_images(args.data, cache=not args.no_cache)
    labels = predict(model.to(device), to_device(images, device)).argmax(1).cpu().numpy()
    write_submission(out, labels)
    print(f"submission: {out} ({len(labels)} rows)")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .local_data import SAMPLE_DIR
    from .submission_check import score

    solution = args.solution or SAMPLE_DIR / "solution.csv.gz"
    accuracy = score(args.submission, solution)
    print(f"accuracy: {accuracy:.4f} ({args.submission} against {solution})")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported like every other user mistake: one line, exit 2."""

    def error(self, message: str):
        command = self.prog.removeprefix(PROG).strip()
        self.exit(2, f"{PROG}: error: {command + ': ' if command else ''}{message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Kaggle Digit Recognizer with multinomial logistic regression.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train with validation and write a submission into a new run folder")
    train.add_argument("--data", type=Path, help="folder with train.csv and test.csv (or Kaggle's zip); "
                       "default: Kaggle's input when found, else the embedded sample")
    train.add_argument("--out", type=Path, default=Path("submissions"), help="where run folders go (default: submissions)")
    train.add_argument("--no-cache", action="store_true", help="parse the CSVs even when a cached parse is current")
    add_config_arguments(train)
    train.set_defaults(handler=cmd_train)

    pred = commands.add_parser("predict", help="write a submission from a saved model")
    pred.add_argument("--model", type=Path, required=True, help="a run's model.pt")
    pred.add_argument("--data", type=Path, help="folder with test.csv (default: the embedded sample)")
    pred.add_argument("--out", type=Path, help="submission path (default: predict-submission.csv beside the model)")
    pred.add_argument("--force", action="store_true", help="replace --out if it exists")
    pred.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    pred.add_argument("--no-cache", action="store_true", help="parse the CSVs even when a cached parse is current")
    pred.set_defaults(handler=cmd_predict)

    sc = commands.add_parser("score", help="accuracy of a submission against a solution file")
    sc.add_argument("submission", type=Path)
    sc.add_argument("--solution", type=Path, help="ImageId,Label truth (default: the embedded sample's solution)")
    sc.set_defaults(handler=cmd_score)
    # Each feature module adds its own subcommands.
    from .bundle import add_commands as add_bundle_commands
    from .kaggle.competition import add_commands as add_kaggle_commands
    from .runs import add_commands as add_runs_commands
    from .cache import add_commands as add_cache_commands
    for add_commands in (add_bundle_commands, add_runs_commands, add_kaggle_commands, add_cache_commands):
        add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .core.interrupts import handle_interrupts, interrupt_exit_code

    handle_interrupts()  # first of all, so that no Ctrl-C ends in a traceback
    try:
        return run_command(argv)
    except KeyboardInterrupt as exc:  # one arriving while an error was being reported
        print(f"{PROG}: {interrupt_report(exc)}", file=sys.stderr)
        return interrupt_exit_code(exc)


def run_command(argv: list[str] | None) -> int:
    from .core.fileio import describe_os_error
    from .core.interrupts import interrupt_exit_code

    for stream in (sys.stdout, sys.stderr):  # a path that is not UTF-8 is shown escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        return args.handler(args)
    except UserError as exc:
        if debug:
            raise
        return report_error(str(exc))
    except OSError as exc:  # not caught nearer its cause: still one line naming the path and the reason
        if debug:
            raise
        return report_error(describe_os_error(exc))
    except KeyboardInterrupt as exc:
        print(f"{PROG}: {interrupt_report(exc)}", file=sys.stderr)
        return interrupt_exit_code(exc)


def report_error(message: str) -> int:
    # One line, whatever text from the user's file the message quotes.
    print(f"{PROG}: error: {' '.join(message.splitlines())}", file=sys.stderr)
    return 2


def interrupt_report(exc: KeyboardInterrupt) -> str:
    """What the interrupt stopped and, truthfully, what was kept."""
    from .core.fileio import PUBLISHED
    from .core.interrupts import Terminated

    word = "terminated" if isinstance(exc, Terminated) else "interrupted"
    if PUBLISHED:
        return f"{word}; the run folder {PUBLISHED[-1]} was complete and is kept; earlier runs are untouched"
    return f"{word}; no run folder was left behind and earlier runs are untouched"
