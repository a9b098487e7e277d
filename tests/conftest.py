import os
import subprocess
import sys
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


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own parse cache, so no test sees another's (or the user's) cached arrays."""
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
