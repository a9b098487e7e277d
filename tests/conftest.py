import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import digit_recognizer  # noqa: F401  (before torch loads, as the kit itself does: its thread wait policy)

ROOT = Path(__file__).resolve().parents[1]
# The tests' made-up runs and records are dated at fixed offsets from one midnight long past (so every
# run the kit makes now sorts after them), and no test names a calendar year.
LONG_AGO = datetime.fromtimestamp(1_700_000_000 - 1_700_000_000 % 86400, timezone.utc)


def past(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    return LONG_AGO + timedelta(days=days, hours=hours, minutes=minutes)


def past_run_id(tag: str, days: float = 0, hours: float = 0, minutes: float = 0) -> str:
    """A run folder's name as run_folders.new_run_id makes one (UTC time, then a tag), at past(...)."""
    return f"{past(days, hours, minutes):%Y%m%dT%H%M%SZ}-{tag}"


@dataclass
class Isolation:
    """Where the suite keeps what the kit writes, and the user's own parse cache it must leave as it was."""
    private: Path  # the session's own folder: the home and the parse cache every process of the suite sees
    real_cache: Path  # the parse cache the kit would use for the user who runs the suite
    real_listing: dict[str, tuple[int, int]]  # its files at the session's start: name -> (size, mtime in ns)


ISOLATION: Isolation | None = None
# HOME-derived folders the kit (or the kaggle client) writes in, moved by these variables when set.
XDG_FOLDERS = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME")


def pytest_configure(config):
    """Before any fixture of any scope (a module- or session-scoped fixture is set up before an autouse
    function-scoped one, and used to write into the user's real parse cache): every process of the suite
    gets a home and a parse cache of the session's own, so nothing it writes under the user's home (the
    parse cache, Kaggle's config folder, the fallback submission records) lands in the real one."""
    global ISOLATION
    from digit_recognizer import cache

    real_cache = cache.cache_dir()  # as the kit finds it in the user's own environment
    private = Path(tempfile.mkdtemp(prefix="digit-recognizer-tests-"))
    (private / "home").mkdir()
    os.environ["HOME"] = str(private / "home")
    os.environ["DIGIT_RECOGNIZER_CACHE"] = str(private / "cache")
    for name in XDG_FOLDERS:
        os.environ.pop(name, None)
    ISOLATION = Isolation(private, real_cache, listing(real_cache))


def pytest_sessionfinish(session, exitstatus):
    """The user's real parse cache is as the session found it, or the run fails saying what changed."""
    if ISOLATION is None:
        return
    changed = changes_to_the_real_cache(session.config)
    if changed:
        print(f"\nthe test suite changed the user's parse cache {ISOLATION.real_cache}: {changed}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    if ISOLATION is not None:
        shutil.rmtree(ISOLATION.private, ignore_errors=True)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    try:
        return {path.name: (path.lstat().st_size, path.lstat().st_mtime_ns) for path in folder.iterdir()}
    except OSError:
        return {}


def changes_to_the_real_cache(config) -> list[str]:
    """What this session did to the user's real parse cache: an entry written for a CSV in one of the
    session's temporary folders, or a file that went without a newer version of its CSV's entry taking
    its place. (Other processes of the same user, on a shared machine, may use that cache meanwhile:
    their entries name their own CSVs and are not counted.)"""
    now = listing(ISOLATION.real_cache)
    ours = (str(ISOLATION.private), str(config._tmp_path_factory.getbasetemp()))
    changed = []
    for name, seen in now.items():
        if ISOLATION.real_listing.get(name) != seen and any(source.startswith(ours) for source in _sources(name)):
            changed.append(f"{name} written for {_sources(name)[0]}")
    for name in ISOLATION.real_listing:
        if name not in now and not any(other.split("-")[0] == name.split("-")[0] for other in now):
            changed.append(f"{name} removed")
    return changed


def _sources(name: str) -> list[str]:
    """The CSV an entry of the real cache was written for, as its header names it (empty when unreadable)."""
    try:
        with open(ISOLATION.real_cache / name, "rb") as handle:
            handle.readline()  # the kit's magic line
            return [str(json.loads(handle.readline(1 << 16))["source"])]
    except (OSError, ValueError, KeyError, TypeError):
        return []


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own parse cache, so no test sees another's cached arrays (the session's own
    cache, set in pytest_configure, is what fixtures of wider scope use)."""
    monkeypatch.setenv("DIGIT_RECOGNIZER_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def kaggle_size(tmp_path_factory) -> Path:
    """A 42,000/28,000-row Kaggle-format folder built from the embedded sample (once per session)."""
    from digit_recognizer.scale import write_kaggle_size

    return write_kaggle_size(tmp_path_factory.mktemp("kaggle_size"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m digit_recognizer ARGS` as a user would, in a separate process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "digit_recognizer", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
