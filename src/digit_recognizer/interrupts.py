"""Ctrl-C, SIGTERM and SIGHUP (a closed terminal): the first one stops the run; any further one is
ignored while it cleans up."""
import atexit
import signal
import sys

_stopping = []  # the first interrupt's signal number, once it has been raised


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), handled like Ctrl-C so that every cleanup path runs."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.signum = signum


# SIGHUP's default would kill the run mid-write and leave its staging folder behind.
SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


def handle_interrupts() -> None:
    """From now on Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated, once; later ones are ignored."""
    for signum in SIGNALS:
        signal.signal(signum, _on_interrupt)
    if hasattr(signal, "setitimer") and not getattr(sys.unraisablehook, "keeps_interrupts", False):
        signal.signal(signal.SIGALRM, _deliver_again)
        sys.unraisablehook = _keeping_interrupts(sys.unraisablehook)
        atexit.register(signal.setitimer, signal.ITIMER_REAL, 0)  # exiting anyway: no late redelivery


def _on_interrupt(signum, frame):
    if _stopping:
        return
    _stopping.append(signum)
    # A second Ctrl-C during clean-up must not cut the clean-up or its message short, nor kill the
    # process as it exits (Python restores the default handlers then, but leaves "ignore" alone).
    for ignored in SIGNALS:
        signal.signal(ignored, signal.SIG_IGN)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _keeping_interrupts(previous):
    """An interrupt raised where Python cannot propagate it (a weakref callback inside an import, a
    __del__) would be printed as a traceback and lost; instead it is delivered again 10 ms later."""
    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _stopping:
            if not sys.is_finalizing():
                signal.setitimer(signal.ITIMER_REAL, 0.01)
            return
        previous(unraisable)
    hook.keeps_interrupts = True
    return hook


def _deliver_again(signum, frame):
    if _stopping:
        _on_interrupt(_stopping.pop(), frame)


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's 128 + signal number."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
