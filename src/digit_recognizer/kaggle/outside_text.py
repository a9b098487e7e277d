"""The one gate for text from outside the kit: Kaggle's replies, logs, file names and server messages.

Anything Kaggle sends (a URL, a team name, a submission description, a score, a log line, an output
file's name, an exception's words) may carry terminal escapes, forged line breaks, or the user's own
key echoed back. Each such string passes through one of the functions here before any terminal or
file sees it:

- `scrub` for a field: one line, its secrets replaced by ***, escapes and control characters gone;
- `clean_lines` for a log or a traceback: the same, line by line, keeping one record per line;
- `clean_name` for a file name: the same, kept usable as a name;
- `traceback_text` for --debug: the frames as Python shows them, each exception's words one scrubbed line;
- `Reply`, which the Kaggle session hands out instead of the client's own reply objects, so that
  every string read from a reply is a scrubbed field whichever command reads it.
"""
import base64
import enum
import re
import traceback
from datetime import date, datetime, timedelta

# Terminal escape sequences, whole: 7-bit (ESC [ ... CSI, ESC ] ... OSC, two-character ones) and their
# 8-bit forms (\x9b CSI, \x9d OSC), so that no parameters are left behind as text.
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])"
                         r"|\x9b[0-?]*[ -/]*[@-~]|\x9d[^\x07\x1b\x9c]*(?:\x07|\x9c)?")
# Any Basic, Bearer or Token value of 16+ characters (a credential, not a word), whoever's it is.
AUTH_VALUE = re.compile(r"\b(Basic|Bearer|Token)(\s+|%20)[A-Za-z0-9+/=._~%-]{16,}", re.IGNORECASE)
# C1 controls (\x9b is a one-byte escape to many terminals) and the bidirectional overrides that make a
# terminal show text in another order than it is (U+202A-U+202E, U+2066-U+2069): gone, not spaced.
INVISIBLE = re.compile("[\x80-\x9f\u202a-\u202e\u2066-\u2069]")
# Line breaks of every kind Python's splitlines knows, so that no separator makes a second record.
LINE_BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
OTHER_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
SECRET_MIN = 4  # a shorter "secret" would scrub ordinary words
CUT_SECRET_MIN = 6  # a secret cut short by the server at a message's end: this much of it is scrubbed

KNOWN: list = []  # the credentials (client.Credentials) this process has read: each is scrubbed everywhere


def scrub(text, credentials=None, limit: int | None = None) -> str:
    """Text from a server (or an exception) made safe to print as one line, then cut to `limit`
    characters: every form of a secret replaced by ***, the key itself, base64 of 'user:key' (an echoed
    Basic header) and any Basic or Bearer value, a secret's start left at the end of a message the
    server cut, terminal escapes removed and line breaks made spaces. Scrubbing comes first, so no cut
    can split a secret."""
    text = _neutral(LINE_BREAKS.sub(" ", str(text)), credentials, tabs=False)
    text = " ".join(text.split())
    text = _cut_secret_at_end(text, credentials)
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def clean_lines(text, credentials=None) -> str:
    """Multi-line text from outside (a kernel's log, a traceback quoting a server) made safe, keeping
    one record per line: each line scrubbed as `scrub` does, but with its own spacing and tabs kept;
    a carriage-return progress bar shows as its newest state; lines end with "\\n"."""
    pieces = str(text).replace("\r\n", "\n").split("\n")
    if pieces[-1] == "":  # the text's own last line break ends its last line; it opens no new one
        pieces.pop()
    lines = []
    for line in pieces:
        states = [part for part in line.split("\r") if part.strip()]
        line = states[-1] if states else ""
        lines.append(_neutral(LINE_BREAKS.sub(" ", line), credentials, tabs=True).rstrip())
    return "".join(line + "\n" for line in lines)


def clean_name(name: str, credentials=None) -> str:
    """A file name from outside, made safe to show and to keep: scrubbed, its spaces kept; never empty,
    never a dot-name that would hide it."""
    cleaned = _neutral(LINE_BREAKS.sub(" ", name), credentials, tabs=False).replace("/", "_").strip()
    return cleaned if cleaned and cleaned not in (".", "..") else "unnamed"


def traceback_text(exc: BaseException) -> str:
    """An exception's traceback, chained exceptions included, as Python prints it, except that each
    exception's words (which may quote a server's answer, and the key it echoed) are one scrubbed line,
    and every line passes clean_lines."""
    chain, seen, current = [], set(), exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for older, newer in zip([None, *reversed(chain)], reversed(chain)):
        if older is not None:
            parts.append("\nThe above exception was the direct cause of the following exception:\n\n"
                         if newer.__cause__ is older else
                         "\nDuring handling of the above exception, another exception occurred:\n\n")
        parts.append("Traceback (most recent call last):\n" + "".join(traceback.format_tb(newer.__traceback__)))
        kind = type(newer)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        words = scrub(str(newer))
        parts.append(f"{name}: {words}\n" if words else f"{name}\n")
    return clean_lines("".join(parts))


def _neutral(text: str, credentials, tabs: bool) -> str:
    text = INVISIBLE.sub("", ANSI_ESCAPE.sub("", text))
    text = OTHER_CONTROLS.sub(" ", text) if tabs else OTHER_CONTROLS.sub(" ", text.replace("\t", " "))
    text = AUTH_VALUE.sub(lambda m: f"{m.group(1)} ***", text)
    for form in secret_forms(credentials):
        text = text.replace(form, "***")
    return text


def _cut_secret_at_end(text: str, credentials) -> str:
    for form in secret_forms(credentials):
        for size in range(len(form) - 1, CUT_SECRET_MIN - 1, -1):  # 6+ characters of it, at the very end
            if text.endswith(form[:size]):
                return text[:-size] + "***"
    return text


def secret_forms(credentials=None) -> list[str]:
    """Every form in which a known secret may come back: itself, and base64 of it and of 'user:key'
    (standard and URL-safe, with and without padding), longest first."""
    forms = []
    for known in [credentials] if credentials else KNOWN:
        secret = getattr(known, "secret", "")
        if not secret or len(secret) < SECRET_MIN:
            continue
        forms.append(secret)
        encoded = [secret.encode()]
        if known.username:
            encoded.append(f"{known.username}:{secret}".encode())
        for raw in encoded:
            for coded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
                forms += [coded, coded.rstrip("=")]
    return sorted(set(forms), key=len, reverse=True)


PLAIN = (type(None), bool, int, float, datetime, date, timedelta, enum.Enum, bytes)


class Reply:
    """A reply from the kaggle client seen through the gate: reading an attribute gives a scrubbed
    field for a string, a list or dict made safe element by element, another Reply for a nested
    object, and numbers, dates and the client's enums as they are. The session hands these out, so no
    command can print or store a string of a reply unscrubbed."""

    __slots__ = ("_value",)

    def __init__(self, value):
        object.__setattr__(self, "_value", value)

    def __getattr__(self, name: str):
        return safe_value(getattr(object.__getattribute__(self, "_value"), name))

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"a reply from Kaggle is read-only ({name})")

    def __repr__(self) -> str:
        return f"Reply({type(object.__getattribute__(self, '_value')).__name__})"


def safe_value(value, text: bool = False):
    """`value` (something the kaggle client returned) made safe; a top-level string returned by a call
    is `text` (a log: its lines kept), any other string a one-line field."""
    if isinstance(value, str):
        return clean_lines(value) if text else scrub(value)
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(safe_value(item) for item in value)
    if isinstance(value, dict):
        return {safe_value(key): safe_value(item) for key, item in value.items()}
    return Reply(value)
