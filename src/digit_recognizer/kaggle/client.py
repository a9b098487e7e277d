"""The one door to Kaggle: credentials, the kaggle client's own KaggleApi, a deadline on every call.

The kaggle package prints an authentication banner and may call the network as soon as any of its
modules is imported, and its HTTP calls have no timeout. So credentials are checked here first, the
client is imported only inside `connect`, every call runs in a daemon thread that is abandoned at a
deadline, the client's own printing is swallowed (with VERBOSE set it would print the auth header),
and every failure becomes one UserError line that names what to do.
"""
import argparse
import base64
import contextlib
import io
import json
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

COMPETITION = "digit-recognizer"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_URL = "https://www.kaggle.com/settings/api"
TIMEOUT_ENV = "DIGIT_RECOGNIZER_KAGGLE_TIMEOUT"
POLL_ENV = "DIGIT_RECOGNIZER_POLL_SECONDS"
POLL_FIRST, POLL_MAX, POLL_GROWTH = 10.0, 60.0, 1.5
CALL_SECONDS = 60.0
TRANSFER_SECONDS = 600.0  # the competition zip is ~15 MB; a slow link needs minutes


@dataclass(frozen=True)
class Credentials:
    """Where the credentials come from (for messages) and who they name; the secret only to scrub it."""
    source: str
    username: str | None
    secret: str = field(default="", repr=False)

    def __post_init__(self):
        if self.secret:
            KNOWN.append(self)  # every line the kit prints is scrubbed of it (cli.report_error, scrub)


KNOWN: list[Credentials] = []  # the credentials this process has read
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
AUTH_VALUE = re.compile(r"\b(Basic|Bearer|Token)(\s+|%20)[A-Za-z0-9+/=._~%-]{16,}", re.IGNORECASE)  # 16+: a credential, not a word


def scrub(text: str, credentials: "Credentials | None" = None, limit: int | None = None) -> str:
    """Text from a server (or an exception) made safe to print, then cut to `limit` characters: every
    form of a secret replaced by ***, the key itself, base64 of 'user:key' (an echoed Basic header) and
    any Basic or Bearer value, a secret's start left at the end of a message the server cut, terminal
    escapes removed and line breaks made spaces. Scrubbing comes first, so no cut can split a secret."""
    text = ANSI_ESCAPE.sub("", str(text))
    text = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text).split())
    text = AUTH_VALUE.sub(lambda m: f"{m.group(1)} ***", text)
    for form in _secret_forms([credentials] if credentials else KNOWN):
        text = text.replace(form, "***")
        for size in range(len(form) - 1, 5, -1):  # a secret cut short by the server (6+ characters of it), at the end
            if text.endswith(form[:size]):
                text = text[:-size] + "***"
                break
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def _secret_forms(known: list) -> list[str]:
    forms = []
    for credentials in known:
        if not credentials.secret or len(credentials.secret) < 4:
            continue
        forms.append(credentials.secret)
        if credentials.username:
            pair = f"{credentials.username}:{credentials.secret}".encode()
            forms += [base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()]
    return sorted(set(forms), key=len, reverse=True)


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


class NoAnswer(UserError):
    """A call abandoned at its deadline: whether Kaggle acted on it is not known."""


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
        raise NoAnswer(f"{what}: no answer from Kaggle within {seconds:g} s; check your network "
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
        seconds = timeout_seconds(TRANSFER_SECONDS if transfer else CALL_SECONDS)
        try:
            return run_with_deadline(what, seconds, getattr(self.api, method), *args, **kwargs)
        except UserError:
            raise
        except (Exception, SystemExit) as exc:  # the client calls exit() on some failures
            raise explain(what, exc, self.credentials) from exc


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
    """One line for a failed client call; the secret is scrubbed from anything quoted."""
    import requests

    http = exc if isinstance(exc, requests.HTTPError) else exc.__context__
    if isinstance(http, requests.HTTPError) and http.response is not None:
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
    return UserError(scrub(text, credentials))


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
    try:
        body = http.response.json()
        message = body.get("message", "") if isinstance(body, dict) else ""
    except ValueError:
        message = ""
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


def wait_timeout_flag(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """--wait-timeout SECONDS: how long a command waits here, for whatever it waits for (`what`)."""
    parser.add_argument("--wait-timeout", type=float, default=default, metavar="SECONDS",
                        help=f"seconds to wait at most {what} (default: {default:g})")
    if "--timeout" not in parser._option_string_actions:  # in `kernels run` it meant Kaggle's limit: it still does
        parser.add_argument("--timeout", dest="wait_timeout", type=float, action=RenamedFlag, new="--wait-timeout")


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
