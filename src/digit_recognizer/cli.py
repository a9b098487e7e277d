"""The `digit-recognizer` command: train, predict and score (plus the Kaggle workflow).

Only the command asked for has its flags built, so `digit-recognizer --help`, `runs` or a Kaggle command
never import the training kernel (kernel.py imports torch); `train` and `predict` do.
"""
import argparse
import errno
import importlib
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import UserError
from .run_record import SAMPLE_SOURCE
from .runs import runs_flag

PROG = "digit-recognizer"


def cmd_train(args: argparse.Namespace) -> int:
    from . import kernel  # loaded already: train's flags are the kernel's settings

    config = kernel.config_from_flags(args)
    note = kernel.unused_settings(config)
    if note:
        print(note, file=sys.stderr)
    if config.device == "cuda":  # say so before the data is parsed, not after
        kernel.training_device(config.device)
    if args.runs.exists() and not args.runs.is_dir():  # before the data is parsed, not after
        raise UserError(f"{args.runs}: not a folder; --runs takes the folder that run folders go in")
    from . import IMPORT_STARTED
    from .local_data import find_kaggle_input, load_data
    from .next_steps import next_steps
    from .run_folders import publish_name, run_folder

    start = IMPORT_STARTED  # the summary's total counts the imports too, as the user waits for them
    timings = {"import": time.perf_counter() - start}  # the package, torch and the kernel; apart from the load
    clock = time.perf_counter()
    data = load_data(args.data or find_kaggle_input(), cache=not args.no_cache)
    if data.source != SAMPLE_SOURCE:  # kept in metrics.json and model.pt: `predict` and `runs` find it from anywhere
        data.source = os.path.abspath(data.source)
    print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
    timings["load"] = time.perf_counter() - clock
    with run_folder(args.runs) as temp:
        record = kernel.run(config, data, temp, timings)
        final = publish_name(temp)
    for line in kernel.summary_lines(record, final, "run folder", time.perf_counter() - start):
        print(line)
    for line in next_steps(config, data.source, args.data, len(data.test_images), final):
        print(line)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    out = args.out or args.model.parent / "predict-submission.csv"
    if out.exists() and not args.force:  # before any work: nothing earlier is overwritten by surprise
        raise UserError(f"{out}: already exists; pass --out with a new name or --force to replace it")
    if not out.parent.is_dir():  # before any work too, not after the predictions
        raise UserError(f"{out}: cannot write it: the folder {out.parent} does not exist")
    if not args.model.is_file():  # before torch is imported: a mistyped path is answered at once
        raise UserError(f"{args.model}: no such model file")
    from . import kernel
    from .local_data import load_test_images
    from .saved_model import load_model, predictions, trained_on

    model, saved = load_model(args.model)
    data = args.data if args.data is not None else trained_on(args.model, saved)
    if args.data is None:
        print(f"data: {data or SAMPLE_SOURCE} (what {args.model} was trained on; --data picks another)")
    device = kernel.training_device(args.device)
    images = load_test_images(data, cache=not args.no_cache)
    labels = predictions(args.model, model.to(device), kernel.to_device(images, device))
    kernel.write_submission(out, labels)
    print(f"submission: {out} ({len(labels)} rows)")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .local_data import SAMPLE_DIR
    from .submission_check import score

    file = args.submission / "submission.csv" if args.submission.is_dir() else args.submission  # a run folder will do
    if args.submission.is_dir() and not file.is_file():
        raise UserError(f"{file}: no such file; score takes a submission CSV or a run folder holding submission.csv")
    solution = args.solution or SAMPLE_DIR / "solution.csv.gz"
    name = None if args.solution else \
        "the embedded sample's solution, the truth for its 1000 test images; --solution FILE scores against another"
    try:
        accuracy = score(file, solution, name)
    except UserError as exc:
        raise UserError(f"{exc}{trained_elsewhere(file.parent) if not args.solution else ''}") from None
    print(f"accuracy: {accuracy:.4f} ({file} against {solution})")
    return 0


def trained_elsewhere(run: Path) -> str:
    """For a run folder trained on other data than the sample: what it was trained on, from its metrics.json."""
    from .run_record import data_shown, read_run

    trained = read_run(run).data
    if not trained or trained == SAMPLE_SOURCE:
        return ""
    return f"; its run {run} was trained on {data_shown(trained)}, not on the sample"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported like every other user mistake: one line, exit 2."""

    def error(self, message: str):
        command = self.prog.removeprefix(PROG).strip()
        self.exit(2, f"{PROG}: error: {command + ': ' if command else ''}{message} (see '{self.prog} --help')\n")


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, booleans included, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default is argparse.SUPPRESS or action.required:
            return text
        default = {False: "off", True: "on", None: "none"}.get(action.default, "%(default)s") \
            if isinstance(action.default, (bool, type(None))) else "%(default)s"
        return f"{text} (default: {default})"


def train_flags(train: argparse.ArgumentParser) -> None:
    from . import kernel  # the kernel's settings are train's flags (importing it loads torch)

    train.add_argument("--data", type=Path, help="folder with train.csv and test.csv (or Kaggle's zip); "
                       "default: Kaggle's input when found, else the embedded sample")
    runs_flag(train, "--out")
    train.add_argument("--no-cache", action="store_true", help="parse the CSVs even when a cached parse is current")
    kernel.add_settings_flags(train)
    train.set_defaults(handler=cmd_train)


def predict_flags(pred: argparse.ArgumentParser) -> None:
    pred.add_argument("--model", type=Path, required=True, help="a run's model.pt")
    pred.add_argument("--data", type=Path, metavar="DIR",
                      help="folder with test.csv (or Kaggle's zip); default: the data the model was trained on")
    pred.add_argument("--out", type=Path, help="submission path (default: predict-submission.csv beside the model)")
    pred.add_argument("--force", action="store_true", help="replace --out if it exists")
    pred.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to predict")
    pred.add_argument("--no-cache", action="store_true", help="parse the CSVs even when a cached parse is current")
    pred.set_defaults(handler=cmd_predict)


def score_flags(sc: argparse.ArgumentParser) -> None:
    sc.add_argument("submission", type=Path, metavar="FILE|RUN_DIR",
                    help="a submission CSV, or a run folder holding submission.csv")
    sc.add_argument("--solution", type=Path, help="ImageId,Label truth (default: the embedded sample's solution)")
    sc.set_defaults(handler=cmd_score)


def kernels_flags(kernels: argparse.ArgumentParser) -> None:
    add_commands(kernels, "kernels_command", "SUBCOMMAND", KERNEL_COMMANDS)


# Every command, in the order --help lists them: (name, what it does, the module:function adding its flags).
# Each module imports its heavy libraries only inside its handlers, so building this parser stays cheap.
COMMANDS = (
    ("train", "train with validation and write a submission into a new run folder", "cli:train_flags"),
    ("predict", "write a submission from a saved model", "cli:predict_flags"),
    ("score", "accuracy of a submission against a solution file", "cli:score_flags"),
    ("runs", "table of local runs, best first: CV estimates, then hold-out accuracies", "runs:runs_flags"),
    ("cache", "list the parse cache's entries and size; --clear empties it", "cache:cache_flags"),
    ("download", "download the competition's CSVs from Kaggle (once)", "kaggle.competition:download_flags"),
    ("kernels", "the Kaggle kernel: push, status, output, logs, run", "cli:kernels_flags"),
    ("validate", "check a submission file the way Kaggle will need it", "kaggle.competition:validate_flags"),
    ("submit", "validate, then submit to Kaggle (a run's file, or a kernel version's output with --kernel) "
               "and record it", "kaggle.competition:submit_flags"),
    ("submissions", "your Kaggle submissions with rank and CV, matched to local runs",
     "kaggle.competition:submissions_flags"),
    ("leaderboard", "the public leaderboard's top and where you stand on it", "kaggle.leaderboard:leaderboard_flags"),
)
# `digit-recognizer kernels ...`, named as in the kaggle CLI (kaggle kernels push/status/output).
KERNEL_COMMANDS = (
    ("push", "push the kernel (its notebook; --script: the script) as a new version, with any of train's "
              "options (after checking it is current)", "kaggle.kernels:push_flags"),
    ("status", "a kernel version's run status (default: the version last pushed)", "kaggle.kernels:status_flags"),
    ("output", "download a kernel version's output into a new run folder", "kaggle.kernels:output_flags"),
    ("logs", "a kernel version's log (default: the version last pushed)", "kaggle.kernels:logs_flags"),
    ("run", "push, wait for that version, fetch its output into a new run folder, validate its submission",
     "kaggle.kernels:run_flags"),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; only `command`'s flags are built (every command is listed either way)."""
    parser = Parser(prog=PROG, description="Kaggle Digit Recognizer with multinomial logistic regression.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (default: off)")
    add_commands(parser, "command", "COMMAND", COMMANDS, define=lambda name: name == command)
    return parser


def add_commands(parser: argparse.ArgumentParser, dest: str, metavar: str, commands: tuple,
                 define=lambda name: True):
    """The subcommands, each listed; the flags only of those `define(name)` says (all, by default)."""
    sub = parser.add_subparsers(dest=dest, metavar=metavar, required=True)
    for name, summary, where in commands:
        add_command(sub, name, summary, where, define(name))
    return sub


def add_command(sub, name: str, summary: str, where: str, define: bool) -> None:
    """One subcommand; its flags only when `define`; --debug works after it too (`train --debug`)."""
    command = sub.add_parser(name, description=summary, help=summary, formatter_class=HelpFormatter)
    if not define:
        return
    module, function = where.split(":")
    getattr(importlib.import_module(f"{__package__}.{module}"), function)(command)
    if not command._subparsers:  # `kernels` itself: its own subcommands take the flag
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks for errors (default: off)")


def chosen_command(argv: list[str]) -> str | None:
    """The command named in argv: its first word that is not a flag (the top level's flags take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def run() -> None:
    """The `digit-recognizer` command: main(), then an exit that skips the interpreter's teardown.

    By then every file is written, closed and renamed into place; tearing down torch's modules
    would only add about half a second to every command that imported it.
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe: nothing more can reach the reader anyway
            pass
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    from .interrupts import handle_interrupts, interrupt_exit_code

    handle_interrupts()  # first of all, so that no Ctrl-C ends in a traceback
    try:
        return run_command(argv)
    except KeyboardInterrupt as exc:  # one arriving while an error was being reported
        print(f"{PROG}: {interrupt_report(exc)}", file=sys.stderr)
        return interrupt_exit_code(exc)


def run_command(argv: list[str] | None) -> int:
    from .interrupts import interrupt_exit_code
    from .local_io import describe_os_error

    for stream in (sys.stdout, sys.stderr):  # a path that is not UTF-8 is shown escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    debug = False
    stdout = sys.stdout = GuardedStdout(sys.stdout)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        command = chosen_command(argv)
        if command == "train":  # `--weight-decay -1e-3` is a value, as the kernel's own command line takes it
            from .kernel import joined_negative_numbers
            argv = joined_negative_numbers(argv)
        parser = build_parser(command)
        args, extra = parser.parse_known_args(argv)
        refuse_removed_flags(extra)
        if extra and not getattr(args, "takes_training_flags", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if extra:  # `kernels push --folds 5`: train's flags, which that command reads with the kernel
            args.training_flags = extra
        debug = args.debug
        return stdout.outcome(args.handler(args))
    except Exception as exc:
        if not isinstance(exc, (*user_errors(), OSError)):
            raise
        if debug:
            return report_traceback(exc)
        # Not caught nearer its cause: still one line, naming the path and the reason for an OS error.
        return report_error(describe_os_error(exc) if isinstance(exc, OSError) else error_line(exc))
    except KeyboardInterrupt as exc:
        print(f"{PROG}: {interrupt_report(exc)}", file=sys.stderr)
        return interrupt_exit_code(exc)
    finally:
        sys.stdout = stdout.stream  # as it was (main() may be called again in one process)


# Flags of the epoch-based fit, which left the kit: the model is fitted to its optimum instead.
REMOVED_FLAGS = ("--epochs", "--patience", "--lr", "--batch-size", "--schedule", "--optimizer")


def refuse_removed_flags(words: list[str]) -> None:
    """One line that says why a flag of older kits is gone, rather than 'unrecognized arguments'."""
    removed = [word.split("=")[0] for word in words if word.split("=")[0] in REMOVED_FLAGS]
    if removed:
        raise UserError(f"{removed[0]} no longer exists: the model is fitted to the optimum of its loss "
                        f"by L-BFGS, with no epochs, learning rate, batches or early stopping (runs made with it "
                        f"still list in 'runs', and their model.pt still predicts)")


def error_line(exc: Exception) -> str:
    """A user error as one line; a setting the data cannot take is named by its flag (--val-fraction)."""
    kernel = sys.modules.get(f"{__package__}.kernel")
    return kernel.as_flag(exc) if kernel is not None and isinstance(exc, kernel.SettingError) else str(exc)


def user_errors() -> tuple[type, ...]:
    """The mistakes reported as one line: the local UserError, and the kernel's once a command loaded it
    (the kernel imports nothing of the package, so it has its own)."""
    kernel = sys.modules.get(f"{__package__}.kernel")
    return (UserError,) if kernel is None else (UserError, kernel.UserError)


class GuardedStdout:
    """sys.stdout, except that a write to a closed pipe (`train | head -1`) or a full device
    (`train > /dev/full`) does not end the command: the error is noted, later output dropped, and the
    work (a run folder) finished. Then a closed pipe exits quietly with 141, as a process killed by
    SIGPIPE does; any other failed write is one line saying the output is lost but the work is kept."""

    def __init__(self, stream):
        self.stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        return self._guarded(self.stream.write, text) or len(text)

    def flush(self) -> None:
        self._guarded(self.stream.flush)

    def _guarded(self, call, *args):
        if self.error is None:
            try:
                return call(*args)
            except OSError as exc:
                self.error = exc
        return None

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the real stream's
        return getattr(self.stream, name)

    def outcome(self, status: int) -> int:
        """The command's exit status, once its output has been flushed (or found lost)."""
        self.flush()
        if self.error is None or status != 0:
            return status
        if self.error.errno == errno.EPIPE:
            return 128 + 13  # SIGPIPE's status: the reader left, nothing to say to it
        from .errors import os_reason
        from .run_folders import PUBLISHED

        kept = f"; the run folder {PUBLISHED[-1]} is complete and kept" if PUBLISHED else ""
        return report_error(f"standard output: {os_reason(self.error)}, so some output was lost{kept}")


def report_error(message: str) -> int:
    # One line, whatever text from the user's file the message quotes.
    message = ' '.join(message.splitlines())
    gate = sys.modules.get(f"{__package__}.kaggle.outside_text")  # loaded with the Kaggle client
    if gate is not None:  # a secret quoted in any form never reaches the terminal
        message = gate.scrub(message)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def report_traceback(exc: BaseException) -> int:
    """--debug: the whole traceback, chained exceptions included, through the gate for text from outside
    (an exception behind a scrubbed line may quote a server's answer, the key in it), line by line."""
    from .kaggle.outside_text import traceback_text

    sys.stderr.write(traceback_text(exc))
    return 1


def interrupt_report(exc: KeyboardInterrupt) -> str:
    """What the interrupt stopped and, truthfully, what was kept."""
    from .run_folders import LEFT_BEHIND, PUBLISHED
    from .interrupts import Terminated

    word = "terminated" if isinstance(exc, Terminated) else "interrupted"
    records = sys.modules.get(f"{__package__}.kaggle.records")  # loaded only by the Kaggle commands
    if records is not None and records.DONE_AT_KAGGLE:  # Kaggle did (or may have) something: lest it be done twice
        return f"{word}; {records.DONE_AT_KAGGLE[-1]}"
    if PUBLISHED:
        return f"{word}; the run folder {PUBLISHED[-1]} was complete and is kept; earlier runs are untouched"
    if LEFT_BEHIND:
        return (f"{word}; the unfinished folder {LEFT_BEHIND[-1]} could not be removed (delete it by hand); "
                f"earlier runs are untouched")
    return f"{word}; no run folder was left behind and earlier runs are untouched"
