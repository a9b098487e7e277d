try:
    from digit_recognizer.cli import run
except KeyboardInterrupt:  # Ctrl-C while starting up, before main() handles it: nothing was done yet
    import sys

    print("digit-recognizer: interrupted while starting; nothing was written", file=sys.stderr)
    raise SystemExit(130)

run()
