"""The one door to Kaggle: credentials, the kaggle client's own KaggleApi, a deadline on every call.

The kaggle package prints an authentication banner and may call the network as soon as any of its
modules is imported, and its HTTP calls have no timeout. So credentials are checked here first, the
client is imported only inside `connect`, every call runs in a daemon thread that is abandoned at a
deadline, the client's own printing is swallowed (with VERBOSE set it would print the auth header),
every reply is handed out through the gate for text from outside (outside_text.Reply), and every
failure becomes one UserError line that names what to do; a failure after which Kaggle may have acted
anyway (no answer, a server error or an unreadable answer to a request that makes something) is an
OutcomeUnknown, which the commands that make things turn into a pending record.
"""
import argparse
import contextlib
import io
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .outside_text import KNOWN, safe_value, scrub  # noqa: F401  (scrub: the gate, also imported from here)

COMPETITION = "digit-recognizer"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_URL = "https://www.kaggle.com/settings/api"
TIMEOUT_ENV = "DIGIT_RECOGNIZER_KAGGLE_TIMEOUT"
POLL_ENV = "DIGIT_RECOGNIZER_POLL_SECONDS"
POLL_FIRST, POLL_MAX, POLL_GROWTH = 10.0, 60.0, 1.5
CALL_SECONDS = 60.0
TRANSFER_SECONDS = 600.0  # the competition zip is ~15 MB; a slow link needs minutes
# The API requests that make something on Kaggle (a submission, a kernel version): when one of them
# fails after reaching Kaggle, Kaggle may have made the thing anyway.
ACTING_REQUESTS = {"CreateSubmission", "CreateCodeSubmission", "SaveKernel"}
BODY_SHOWN = 80  # characters of an unreadable answer quoted in the message


@dataclass(frozen=True)
class Credentials:
    """Where the credentials come from (for messages) and who they name; the secret only to scrub it."""
    source: str
    username: str | None
    secret: str = field(default="", repr=False)

    def __post_init__(self):
        if self.secret:
            KNOWN.append(self)  # every line the kit prints is scrubbed of it (cli.report_error, scrub)


def kaggle_config_dir() -> Path:
    """The folder the kaggle client reads kaggle.json from, chosen the way the client chooses it."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured)
    legacy = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return legacy


def how_to_provide() -> str:
    config = os.environ.get("KAGGLE_CONFIG_DIR")
    key_file = f"{config}/kaggle.json" if config else "~/.kaggle/kaggle.json"
    return (f"put your API key in {key_file} as {{\"username\": \"...\", \"key\": \"...\"}} (chmod 600) "
            f"or set KAGGLE_USERNAME and KAGGLE_KEY; newer API tokens go in KAGGLE_API_TOKEN or "
            f"~/.kaggle/access_token (create a token at {TOKEN_URL})")


def find_credentials() -> Credentials:
    """The credentials the kaggle client will use, in its own order; UserError when there are none."""
    key_file = kaggle_config_dir() / "kaggle.json"
    warn_if_readable_by_others(key_file)
    token = _access_token()
    if token:
        return token
    file_values, file_problem = _read_key_file(key_file)
    username = os.environ.get("KAGGLE_USERNAME") or file_values.get("username")
    key = os.environ.get("KAGGLE_KEY") or file_values.get("key")
    if username and key:
        source = "KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else str(key_file)
        return Credentials(source, str(username), str(key))
    oauth = Path.home() / ".kaggle" / "credentials.json"
    if oauth.is_file():
        return Credentials(f"{oauth} (from 'kaggle auth login')", None)
    if file_problem:
        raise UserError(f"{key_file}: {file_problem}; {how_to_provide()}")
    raise UserError(f"no Kaggle credentials found: {how_to_provide()}")


def _access_token() -> Credentials | None:
    value = os.environ.get("KAGGLE_API_TOKEN", "").strip()
    if value:
        if Path(value).is_file():
            text = Path(value).read_text(encoding="utf-8", errors="replace").strip()
            return Credentials(f"the file named by KAGGLE_API_TOKEN ({value})", None, text) if text else None
        return Credentials("KAGGLE_API_TOKEN", None, value)
    for name in ("access_token", "access_token.txt"):
        path = Path.home() / ".kaggle" / name
        text = path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else ""
        if text:
            return Credentials(str(path), None, text)
    return None


def _read_key_file(path: Path) -> tuple[dict, str]:
    """kaggle.json's values, and what is wrong with it ('' when it is fine or absent)."""
    if not path.is_file():
        return {}, ""
    expected = 'expected {"username": "...", "key": "..."}'
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # an int past 4,300 digits, deep nesting
        return {}, f"not readable as JSON; {expected}"
    if not isinstance(values, dict) or not values.get("username") or not values.get("key"):
        return {}, f"has no username and key; {expected}"
    return values, ""


def warn_if_readable_by_others(path: Path) -> None:
    """One line, as the kaggle client advises, when the key file is open to other users."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if os.name != "nt" and mode & 0o077:
        print(f"digit-recognizer: warning: {path} is readable by other users; run 'chmod 600 {path}'",
              file=sys.stderr)


def timeout_seconds(default: float) -> float:
    """The deadline for one call; the environment variable lets a slow link (or a test) change it."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={value!r}: expected a number of seconds") from None
    if not seconds > 0:
        raise UserError(f"{TIMEOUT_ENV}={value!r}: expected a positive number of seconds")
    return seconds


class OutcomeUnknown(UserError):
    """A call after which Kaggle may have acted: abandoned at its deadline, or a request that makes
    something (ACTING_REQUESTS) answered by a server error, cut short, or with an unreadable answer."""


def run_with_deadline(what: str, seconds: float, fn, *args, **kwargs):
    """fn(*args, **kwargs) in a daemon thread, its printing swallowed; UserError if it outlives `seconds`."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # SystemExit from the client's authenticate() included
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"kaggle: {what}", daemon=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        worker.start()
        worker.join(seconds)
    if worker.is_alive():
        raise OutcomeUnknown(f"{what}: no answer from Kaggle within {seconds:g} s; check your network "
                        f"connection (or set {TIMEOUT_ENV} to a longer deadline)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class KaggleSession:
    """An authenticated KaggleApi whose every call is bounded in time and explained in one line."""

    def __init__(self, api, credentials: Credentials):
        self.api = api
        self.credentials = credentials
        self.username = api.config_values.get("username") or credentials.username

    def call(self, what: str, method: str, *args, transfer: bool = False, **kwargs):
        """The client's `method`, bounded in time; its reply comes through the gate (a Reply, or a
        string returned whole as safe text)."""
        seconds = timeout_seconds(TRANSFER_SECONDS if transfer else CALL_SECONDS)
        try:
            reply = run_with_deadline(what, seconds, getattr(self.api, method), *args, **kwargs)
        except UserError:
            raise
        except (Exception, SystemExit) as exc:  # the client calls exit() on some failures
            raise explain(what, exc, self.credentials) from exc
        return safe_value(reply, text=True)


def connect(credentials: Credentials | None = None) -> KaggleSession:
    """Check the credentials locally (unless given), then import and authenticate the client (bounded)."""
    credentials = credentials or find_credentials()
    try:
        api = run_with_deadline("connecting to Kaggle", timeout_seconds(CALL_SECONDS), _authenticated_api)
    except UserError:
        raise
    except SystemExit:
        raise UserError(f"Kaggle did not accept the credentials from {credentials.source}; "
                        f"{how_to_provide()}") from None
    except Exception as exc:
        raise explain("connecting to Kaggle", exc, credentials) from exc
    return KaggleSession(api, credentials)


def _authenticated_api():
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    return api


def explain(what: str, exc: BaseException, credentials: Credentials) -> UserError:
    """One line for a failed client call; the secret is scrubbed from anything quoted. An
    OutcomeUnknown when Kaggle may have acted on the request all the same."""
    import requests

    http = exc if isinstance(exc, requests.HTTPError) else exc.__context__
    if isinstance(exc, json.JSONDecodeError):  # requests' own JSONDecodeError is one too
        text = f"{what}: Kaggle's answer is not readable JSON ({what_kaggle_sent(exc)})"
    elif isinstance(http, requests.HTTPError) and http.response is not None:
        text = _http_problem(what, http.response.status_code, _server_message(http, credentials), credentials)
    elif isinstance(exc, requests.ConnectionError):
        text = (f"{what}: cannot reach Kaggle ({_connection_reason(exc)}); check your network connection "
                f"(this machine may be offline)")
    elif isinstance(exc, requests.Timeout):
        text = f"{what}: Kaggle did not answer in time; check your network connection"
    elif isinstance(exc, (ValueError, OSError)):
        text = f"{what}: {_first_text_line(str(exc))}"
    else:
        text = f"{what}: the kaggle client failed ({type(exc).__name__}: {_first_text_line(str(exc))})"
    kind = OutcomeUnknown if may_have_acted(exc) else UserError
    return kind(scrub(text, credentials))


def reply_behind(exc: BaseException):
    """The HTTP reply (requests.Response) a failed call was reading: the error's own, else the innermost
    one held by a frame the exception passed through (the client parses its replies in its own code)."""
    import requests

    for error in (exc, exc.__cause__, exc.__context__):
        if isinstance(getattr(error, "response", None), requests.Response):
            return error.response
    found, frame = None, exc.__traceback__
    while frame is not None:
        for value in frame.tb_frame.f_locals.values():
            if isinstance(value, requests.Response):
                found = value
        frame = frame.tb_next
    return found


def what_kaggle_sent(exc: BaseException) -> str:
    """'HTTP 200, 41 bytes: {"message": "Successf...': the status and first characters of the answer
    that failed, scrubbed; for an answer the client could not parse."""
    reply = reply_behind(exc)
    body = exc.doc if isinstance(getattr(exc, "doc", None), str) else _body_read(reply)
    size = f"{len(body.encode('utf-8', 'replace'))} bytes"
    start = scrub(body[:BODY_SHOWN * 2], limit=BODY_SHOWN)  # scrubbed, then cut: no cut splits a secret
    said = f"{size}: {start}" if start else f"{size}, empty"
    return f"HTTP {reply.status_code}, {said}" if reply is not None else said


def _body_read(reply) -> str:
    """The text of a reply already read; a streamed one not yet read is not read now (it may be large)."""
    if reply is None or not getattr(reply, "_content_consumed", False):
        return ""
    return reply.content.decode("utf-8", "replace") if reply.content else ""


def may_have_acted(exc: BaseException) -> bool:
    """Whether the failed request makes something on Kaggle and failed after Kaggle had it: a server
    error (5xx), an unreadable or cut-short answer, or the connection dropped once the request was sent."""
    import requests
    import urllib3

    reply = reply_behind(exc)
    request = reply.request if reply is not None else getattr(exc, "request", None)
    url = getattr(request, "url", None) or ""
    if url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] not in ACTING_REQUESTS:
        return False
    cut_short = (json.JSONDecodeError, requests.exceptions.ChunkedEncodingError, requests.exceptions.ReadTimeout)
    if isinstance(exc, cut_short):
        return True
    if isinstance(exc, requests.ConnectionError):  # refused or unresolved: never sent; aborted: sent
        reasons = [*exc.args, *(getattr(arg, "reason", None) for arg in exc.args)]  # MaxRetryError(reason=...)
        return any(isinstance(reason, urllib3.exceptions.ProtocolError) for reason in reasons)
    return reply is not None and reply.status_code >= 500


def _http_problem(what: str, status: int, message: str, credentials: Credentials) -> str:
    said = f"HTTP {status}" + (f": {message}" if message else "")
    if status == 401:
        return (f"{what}: Kaggle rejected the credentials from {credentials.source} ({said}); check them, "
                f"or create a new token at {TOKEN_URL}")
    if status == 403:
        return (f"{what}: Kaggle refused ({said}); accept the competition rules at {RULES_URL} "
                f"if you have not, and check that the kernel id names your own account")
    if status == 404:
        return f"{what}: not found on Kaggle ({said}); check the competition or kernel id"
    if status == 429:
        return f"{what}: Kaggle is limiting the request rate ({said}); wait a few minutes and try again"
    return f"{what}: Kaggle answered {said}"


def _server_message(http, credentials: Credentials) -> str:
    """Kaggle's own words for an HTTP error: its JSON message, else the start of what it sent."""
    try:
        body = http.response.json()
        message = body.get("message", "") if isinstance(body, dict) else ""
    except ValueError:
        sent = _body_read(http.response).strip()
        message = f"not JSON: {sent}" if sent else ""
    return scrub(message or str(http.args[0] if http.args else ""), credentials, limit=200)  # scrubbed, then cut


def _connection_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (("NameResolution", "the Kaggle host name does not resolve"),
                           ("Failed to resolve", "the Kaggle host name does not resolve"),
                           ("Connection refused", "connection refused"),
                           ("timed out", "the connection timed out"),
                           ("Network is unreachable", "network unreachable")):
        if needle in text:
            return reason
    return _first_text_line(text)[:160]


def _first_text_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


class RenamedFlag(argparse.Action):
    """An old spelling that still works, with a warning naming the flag that means it now."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"digit-recognizer: warning: {option_string} is now {self.new} ({option_string} meant Kaggle's run "
              f"limit in one command and time waited here in others)", file=sys.stderr)
        setattr(namespace, self.dest, values)


class Bounded:
    """An argparse type for a number a Kaggle command sends (or waits by): `kind` from `low` to `high`,
    checked before any request, else one line naming the flag (argparse adds it) and the range."""

    def __init__(self, kind: type, low: float, high: float, what: str):
        self.kind, self.low, self.high, self.what = kind, low, high, what
        self.__name__ = kind.__name__  # argparse's name for the type in its own messages

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not self.low <= value <= self.high:  # NaN compares false: refused too
            raise argparse.ArgumentTypeError(f"{text!r}: expected {self.what} from {_shown(self.low)} to "
                                             f"{_shown(self.high)}")
        return value


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


KAGGLE_RUN_LIMIT = 12 * 3600  # a kernel session's longest run on Kaggle, in seconds
TIME_LIMIT = Bounded(int, 1, KAGGLE_RUN_LIMIT, "whole seconds of run time on Kaggle")
VERSION_NUMBER = Bounded(int, 1, 2**31 - 1, "a kernel version number")
WAIT_SECONDS = Bounded(float, 1e-3, 7 * 86400, "a number of seconds to wait")


def wait_timeout_flag(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """--wait-timeout SECONDS: how long a command waits here, for whatever it waits for (`what`)."""
    parser.add_argument("--wait-timeout", type=WAIT_SECONDS, default=default, metavar="SECONDS",
                        help=f"seconds to wait at most {what} (default: {default:g})")
    if "--timeout" not in parser._option_string_actions:  # in `kernels run` it meant Kaggle's limit: it still does
        parser.add_argument("--timeout", dest="wait_timeout", type=WAIT_SECONDS, action=RenamedFlag,
                            new="--wait-timeout")


def poll(check, timeout: float, label: str, resume: str, detail=None) -> str:
    """Call check() -> (finished, state) with a growing pause until finished; UserError past `timeout`
    that names the `resume` command to go on waiting. detail(), when given, adds a live line (the
    kernel's last log line) to the progress shown while waiting."""
    delay = wait_settings(timeout)
    start = time.monotonic()
    shown, tty = None, sys.stderr.isatty()
    while True:
        finished, state = check()
        elapsed = time.monotonic() - start
        if finished:
            if tty and shown:
                print(file=sys.stderr)
            return state
        remaining = timeout - elapsed
        if remaining <= 0:
            raise UserError(f"{label}: still {state} after {elapsed:.0f} s (--wait-timeout {timeout:g}); "
                            f"to go on waiting: {resume}")
        pause = min(delay, remaining)
        extra = detail() if detail else ""
        line = f"{label}: {state} ({elapsed:.0f} s so far; next check in {pause:.0f} s)"
        if tty:
            print("\r" + (f"{line} | {extra}" if extra else line)[:120].ljust(120), end="", file=sys.stderr, flush=True)
        elif (state, extra) != shown:  # a log, not a terminal: one line per change
            print(line + (f"\n  log: {extra}" if extra else ""), file=sys.stderr, flush=True)
        shown = (state, extra)
        time.sleep(pause)
        delay = min(delay * POLL_GROWTH, POLL_MAX)


def http_status(error: BaseException) -> int | None:
    """The HTTP status behind a failed client call (a UserError made by explain), if there was one."""
    import requests

    for exc in (error, error.__cause__, getattr(error.__cause__, "__context__", None)):
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            return exc.response.status_code
    return None


def wait_settings(timeout: float) -> float:
    """The first pause between checks ($DIGIT_RECOGNIZER_POLL_SECONDS), after checking it and --wait-timeout:
    NaN would make time.sleep raise, and a NaN --wait-timeout would never run out."""
    if not (math.isfinite(timeout) and timeout > 0):
        raise UserError(f"--wait-timeout {timeout}: expected a positive number of seconds")
    value = os.environ.get(POLL_ENV)
    if not value:
        return POLL_FIRST
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise UserError(f"{POLL_ENV}={value!r}: expected a number of seconds")
    return max(seconds, 0.01)
