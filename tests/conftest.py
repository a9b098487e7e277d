import os
import subprocess
import sys
from pathlib import Path

import pytest

import digit_recognizer.core.config  # noqa: F401  (before torch loads, as the kit itself does: its thread wait policy)

ROOT = Path(__file__).resolve().parents[1]


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
