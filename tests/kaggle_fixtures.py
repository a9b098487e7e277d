"""What the Kaggle tests share: the fake Kaggle running with alice's key, a user without credentials,
a copy of the project's kernel, and a one-line-error check."""
import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from fake_kaggle import FAKE_KEY, FAKE_USER, FakeKaggle

SAMPLE = ROOT / "src" / "digit_recognizer" / "sample"
KERNEL = "alice/digit-recognizer-logistic-regression"
HOW_TO = ("kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "access_token")


def sample(name: str) -> bytes:
    return gzip.decompress((SAMPLE / f"{name}.csv.gz").read_bytes())


def run(*args: str, env: dict, cwd: Path):
    return run_cli(*args, env=env, cwd=cwd, timeout=90)


def one_error_line(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def user_env(tmp_path, monkeypatch) -> dict:
    """A user with no Kaggle credentials anywhere: a fresh HOME, no KAGGLE_* variables, no proxies."""
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "DIGIT_RECOGNIZER_POLL_SECONDS": "0.02", "DIGIT_RECOGNIZER_KAGGLE_TIMEOUT": "30"}


@pytest.fixture
def kaggle(tmp_path, user_env):
    """The fake Kaggle, running; .env holds what a client needs to reach it with alice's key."""
    fake = FakeKaggle().start()
    config = tmp_path / "kaggle-config"
    config.mkdir()
    key_file = config / "kaggle.json"
    key_file.write_text(json.dumps({"username": FAKE_USER, "key": FAKE_KEY}))
    key_file.chmod(0o600)
    fake.env.update(user_env, KAGGLE_CONFIG_DIR=str(config))
    fake.key_file = key_file
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project's committed kernel and metadata (push may fill in the id)."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(ROOT / "kernel-metadata.json", folder)
    shutil.copytree(ROOT / "kernel", folder / "kernel")
    return folder


def submitted_column(runs_table: str, run_name: str) -> tuple[str, str]:
    """(submitted, public score) of a run in `runs`' table, read under the header's own columns."""
    lines = runs_table.splitlines()
    header = next(line for line in lines if line.startswith("run "))
    (row,) = [line for line in lines if line.startswith(run_name)]
    submitted, score = row[header.index("submitted"):].split()[:2]
    return submitted, score
