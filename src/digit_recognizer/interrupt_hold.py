"""Holding Ctrl-C, SIGTERM and SIGHUP back across a step that must not be cut in two (an upload and its record).

Blocking the signals with pthread_sigmask is not enough here: numpy's and the kaggle client's threads
leave them unblocked, the kernel hands a process-wide signal to any such thread, and Python then runs
the handler in the main thread anyway. So the Python-level handlers are swapped instead: a signal that
arrives inside the block is noted, and its own handler runs once the block is over.
"""
import os
import signal
from contextlib import contextmanager
from typing import Iterator

HELD = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Signals in HELD that arrive inside the block are delivered, the first one once, when it ends."""
    pending: list[int] = []

    def note(signum, frame):
        pending.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            _deliver(pending[0], previous[pending[0]])


def _deliver(signum: int, handler) -> None:
    if callable(handler):
        handler(signum, None)  # the kit's own handler: raises KeyboardInterrupt (or Terminated)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # what the signal would have done without the hold
