"""Where both ways of starting the command begin, the installed `digit-recognizer` console script and
`python -m digit_recognizer`: a Ctrl-C while the command's modules are still importing (a tenth of a
second or more, before main() takes over the signals) is one line, not a traceback."""
import sys


def run() -> None:
    try:
        from .cli import run as run_command
    except KeyboardInterrupt:  # nothing was done yet
        print("digit-recognizer: interrupted while starting; nothing was written", file=sys.stderr)
        raise SystemExit(130)
    run_command()
