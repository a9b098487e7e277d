"""A kernel version's log, through the client's kernels_logs (the saved log) and kernels_logs_stream
(the live stream while it runs): as text, its tail, its last line while waiting, or followed live.

Kaggle keeps a log as a JSON list of {"stream_name", "time", "data"} events; the client hands it
over as it came, so it is turned into plain text here, and every event's text passes the gate for text
from outside (outside_text.clean_lines: no escapes, no secret, one record per line) in `_event_text`,
which the saved log, the live stream and the waits' last line all go through. The stream is read in a
daemon thread so that every wait on it is bounded.
"""
import json
import queue
import threading
import time

from ..errors import UserError
from .client import KaggleSession, explain
from .outside_text import clean_lines, scrub

TAIL_LINES = 20
STREAM_RETRY_SECONDS = 10.0


def log_text(raw: str) -> str:
    """Kaggle's log as the kernel printed it (a JSON event list becomes its `data`, joined), made safe."""
    try:
        events = json.loads(raw)
    except (TypeError, ValueError, RecursionError):  # nested too deep, or an int past 4,300 digits
        return clean_lines(raw or "")
    if not isinstance(events, list):
        return clean_lines(raw)
    return "".join(_event_text(e) for e in events)


def _event_text(event) -> str:
    """One log event's text, through the gate: its lines, each ending in a line break."""
    data = event.get("data") if isinstance(event, dict) else None
    return clean_lines(data) if isinstance(data, str) else ""


def last_line(text: str) -> str:
    """The last non-blank line; a carriage-return progress bar counts by its newest state."""
    lines = [part.strip() for line in text.splitlines() for part in line.split("\r")[-1:]]
    return next((line for line in reversed(lines) if line), "")


def read_log(session: KaggleSession, ref: str) -> str:
    return log_text(session.call(f"reading the log of {ref}", "kernels_logs", ref))


def print_log_tail(session: KaggleSession, ref: str, what: str, lines: int = TAIL_LINES) -> None:
    """The last lines of a version's log, or one line saying why there are none."""
    try:
        text = read_log(session, ref)
    except UserError as exc:
        print(f"the log of {what} is not available: {exc}")
        return
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    if not tail:
        print(f"the log of {what} is empty")
        return
    print(f"last {len(tail)} lines of the log of {what}:")
    for line in tail:  # already through the gate (log_text); only cut here
        print(f"  {scrub(line, session.credentials, limit=500)}")


class LogFollower:
    """Reads a version's live log stream in the background and keeps its last line (for the waits).

    Before a pushed version's session starts, Kaggle may have no stream for it yet: the reader tries
    again every STREAM_RETRY_SECONDS until the stream ends normally or stop() is called."""

    def __init__(self, session: KaggleSession, ref: str):
        self.line = ""
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(session, ref), name="kaggle: log", daemon=True)
        self._thread.start()

    def _read(self, session: KaggleSession, ref: str) -> None:
        while not self._stopped.is_set():
            try:
                for event in session.api.kernels_logs_stream(ref):
                    line = last_line(_event_text(event))
                    if line:
                        self.line = line
                return  # the stream said the session ended
            except Exception:  # no stream (yet) only costs the live line; the status decides
                self._stopped.wait(STREAM_RETRY_SECONDS)

    def last_line(self) -> str:
        return self.line

    def stop(self) -> None:
        self._stopped.set()


def follow_log(session: KaggleSession, ref: str, timeout: float, resume: str):
    """Yield the log's text as the stream brings it, until the stream says the session ended;
    UserError (naming `resume`) when it is still going after `timeout` seconds."""
    events: queue.Queue = queue.Queue()
    done = object()

    def read():
        try:
            for event in session.api.kernels_logs_stream(ref):
                events.put(_event_text(event))
            events.put(done)
        except BaseException as exc:
            events.put(exc)

    threading.Thread(target=read, name="kaggle: log stream", daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            item = events.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise UserError(f"the log of {ref}: still streaming after {timeout:g} s (--wait-timeout); "
                            f"to go on: {resume}") from None
        if item is done:
            return
        if isinstance(item, BaseException):
            raise explain(f"streaming the log of {ref}", item, session.credentials) from item
        if item:
            yield item
