"""What `train` prints last: the command to run next, runnable exactly as printed (see invocation.py)."""
from pathlib import Path
from shlex import quote

from .invocation import command
from .kernel import Config, settings_changed
from .run_record import SAMPLE_SOURCE

SAME_WHEREVER = {"device"}  # where it trains is the machine's business, not an option to carry over


def next_steps(cfg: Config, source: str, data: Path | None, n_test: int, run: Path) -> list[str]:
    """The lines after a run's summary: download when it was the sample, else submit (or push to Kaggle)."""
    from .kaggle.submitting import KAGGLE_TEST_ROWS

    options = "".join(f" {flag}" for flag in training_flags(cfg))
    if source == SAMPLE_SOURCE:
        return ["Kaggle scores only predictions for its own 28,000 test images, not this run on the embedded "
                "sample; with Kaggle credentials (README: \"Your first Kaggle submission\"):",
                f"next: {command('download')}",
                f"then: {command('train --data data' + options)}"]
    if n_test != KAGGLE_TEST_ROWS:
        return [f"its test.csv has {n_test} images, not the competition's {KAGGLE_TEST_ROWS}, so Kaggle would "
                f"refuse this submission; 'score' needs that test.csv's own solution file (--solution)"]
    push = f"or, on Kaggle's machines: {command('kernels push' + options)}" if push_takes(options) else \
        f"or, on Kaggle's machines with the kernel's default options: {command('kernels push')}"
    return [f"next: {command('submit ' + quote(str(run)) + ' --wait')}", push]


def push_takes(options: str) -> bool:
    """Whether `kernels push` accepts these flags (so that the printed push runs as printed): it takes train's
    settings flags, which it reads with the kernel's own parser."""
    import argparse
    import shlex

    from .kernel import add_settings_flags

    parser = argparse.ArgumentParser(add_help=False)
    add_settings_flags(parser)
    _, unknown = parser.parse_known_args(shlex.split(options))
    return not unknown


def training_flags(cfg: Config) -> list[str]:
    """The flags that make `cfg` from the defaults (settings the run ignored left out)."""
    flags = []
    for name, value in settings_changed(cfg).items():
        if name in SAME_WHEREVER:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags.append(f"{flag} {quote(str(value))}")
    return flags
