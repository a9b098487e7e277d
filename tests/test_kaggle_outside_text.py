"""Text from outside the kit passes one gate before any terminal or file (issue 28, class 1), and an
answer that is not JSON is described by what Kaggle sent, not by the parser's words (class 6).

The fake Kaggle puts terminal escapes, a forged line and alice's own key (and its base64 forms) into
every kind of text a command prints or stores: a pushed version's URL, a kernel's log, team names,
submission descriptions and scores, output file names and a fetched metrics.json, and a server error
that --debug shows whole. Each command's output and each file it writes must hold none of it, while
a log keeps one record per line.
"""
import base64
import json

from conftest import past
from fake_kaggle import FAKE_KEY, FAKE_USER
from kaggle_fixtures import KERNEL, kaggle, project, run, sample, user_env  # noqa: F401
from test_secrets_and_push import shows_any_of

BASIC = base64.b64encode(f"{FAKE_USER}:{FAKE_KEY}".encode()).decode()
SECRETS = (FAKE_KEY, BASIC, base64.b64encode(FAKE_KEY.encode()).decode())
# Clears the screen, sets the window title, hides and colours text, reverses what follows (U+202E),
# then a line that would look like the kit's own, and the key.
HOSTILE = f"\x1b[2J\x1b]0;pwned\x07evil\x1b[8m\u202e\x9b31m {FAKE_KEY}\nFORGED: all good"
UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


def assert_safe(text: str) -> None:
    """No escape or control a terminal acts on, no part of a secret, no line forged by a server."""
    assert not any(c in text for c in UNSAFE), repr(text)
    assert not any(shows_any_of(text, secret) for secret in SECRETS), text
    assert not any(line.lstrip().startswith("FORGED") for line in text.splitlines()), text


def output(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout + result.stderr


def strings(value) -> list[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_a_pushed_versions_url_is_printed_and_recorded_through_the_gate(kaggle, project):
    kaggle.push_reply = {"ref": "/code/alice/x", "versionNumber": 1,
                         "url": f"http://localhost/code/alice/x\x1b[8m?key={FAKE_KEY}\nFORGED kernel: http://evil"}
    result = run("kernels", "push", "--no-run", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert_safe(output(result))
    assert "kernel: http://localhost/code/alice/x?key=*** FORGED kernel: http://evil" in result.stdout
    (record,) = json.loads((project / "kernel-pushes.json").read_text())
    for text in strings(record):
        assert_safe(text)
        assert "\n" not in text
    assert record["version"] == 1


def test_a_kernels_log_keeps_its_lines_and_loses_escapes_and_the_key_in_every_command(kaggle, project):
    kaggle.kernel_statuses = ["ERROR"]
    kaggle.new_version_log = ["epoch 1", "\x1b[1A\x1b[2Kvalidation accuracy: 0.99 " + FAKE_KEY,
                              "  50%|#####     |\r 100%|##########|", f"token {BASIC}\u202e", "done"]
    assert run("kernels", "push", env=kaggle.env, cwd=project).returncode == 0
    expected = ["epoch 1", "validation accuracy: 0.99 ***", " 100%|##########|", "token ***", "done"]
    logs = run("kernels", "logs", env=kaggle.env, cwd=project)
    assert logs.returncode == 0 and logs.stdout.splitlines() == expected, logs.stdout
    follow = run("kernels", "logs", "--follow", "--wait-timeout", "30", env=kaggle.env, cwd=project)
    assert follow.returncode == 0 and follow.stdout.splitlines() == expected, follow.stdout
    status = run("kernels", "status", env=kaggle.env, cwd=project)
    assert status.returncode == 1 and "  validation accuracy: 0.99 ***" in status.stdout.splitlines()
    waited = run("kernels", "status", "--wait", "--wait-timeout", "30", env=kaggle.env, cwd=project)
    for result in (logs, follow, status, waited):
        assert_safe(output(result))


def test_team_names_descriptions_and_scores_are_one_safe_line_each(tmp_path, kaggle):
    kaggle.leaderboard = [{"teamId": 1, "teamName": HOSTILE, "score": "0.99000\x1b[8m"},
                          {"teamId": 2, "teamName": FAKE_USER, "score": "0.91234", "members": FAKE_USER}]
    kaggle.submissions = [{"ref": 7, "date": f"{past(days=1):%Y-%m-%dT%H:%M:%S.000Z}", "description": HOSTILE,
                           "fileName": "submission.csv", "status": "COMPLETE", "teamName": HOSTILE,
                           "publicScore": f"0.91234\x1b[31m {FAKE_KEY}", "_lists": 0}]
    board = run("leaderboard", env=kaggle.env, cwd=tmp_path)
    listed = run("submissions", env=kaggle.env, cwd=tmp_path)
    for result in (board, listed):
        assert result.returncode == 0, result.stderr
        assert_safe(output(result))
    (team_row,) = [line for line in board.stdout.splitlines() if line.strip().startswith("1 ")]
    assert "evil ***" in team_row and "0.99000" in team_row
    (row,) = [line for line in listed.stdout.splitlines() if "evil" in line]
    assert "0.91234 ***" in row


def test_output_file_names_and_a_fetched_metrics_json_are_made_safe(tmp_path, kaggle):
    metrics = {"val_accuracy": 0.9, "data": HOSTILE, "config": {"seed": 0, "note\x1b[2J": HOSTILE}}
    kaggle.add_version(1, ["COMPLETE"], {"submission.csv": sample("solution"), "notes\x1b[31m.txt": b"x",
                                         f"model-{FAKE_KEY}.txt": b"y", "a\nFORGED.txt": b"z",
                                         "metrics.json": json.dumps(metrics).encode()})
    result = run("kernels", "output", "--kernel", KERNEL, "--version", "1", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_safe(output(result))
    (folder,) = (tmp_path / "submissions").iterdir()
    names = sorted(p.name for p in folder.iterdir())
    for name in names:
        assert_safe(name)
    assert {"notes.txt", "model-***.txt", "a FORGED.txt", "submission.csv"} <= set(names)
    for text in strings(json.loads((folder / "metrics.json").read_text())):
        assert_safe(text)
        assert "\n" not in text
    assert (folder / "from-kernel.metrics.json").read_bytes() == json.dumps(metrics).encode()  # nothing lost
    shown = run("runs", env=kaggle.env, cwd=tmp_path)  # what reads the run folder sees only the safe text
    assert shown.returncode == 0 and "evil" in shown.stdout
    assert_safe(output(shown))


def test_debug_shows_the_whole_traceback_without_the_key_or_escapes(tmp_path, kaggle):
    kaggle.echo_auth = {"ListSubmissions"}  # Kaggle's 400 quotes the request's Authorization header
    result = run("--debug", "submissions", env=kaggle.env, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr and "HTTPError" in result.stderr
    assert "Basic ***" in result.stderr
    assert_safe(result.stdout + result.stderr)
    kaggle.echo_auth = set()
    kaggle.messages = {"ListSubmissions": HOSTILE}
    result = run("--debug", "submissions", env=kaggle.env, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert_safe(result.stdout + result.stderr)


def test_an_answer_that_is_not_json_is_described_by_what_kaggle_sent(tmp_path, kaggle):
    kaggle.not_json = {"ListSubmissions": f"<html>\x1b[31mDown for maintenance {FAKE_KEY}</html>".encode()}
    line = one_line(run("submissions", env=kaggle.env, cwd=tmp_path))
    assert "not readable JSON" in line and "HTTP 200" in line and "<html>Down for maintenance ***</html>" in line
    assert "Expecting value" not in line and "line 1 column" not in line
    kaggle.not_json = {}
    kaggle.truncated = {"ListSubmissions"}  # cut halfway through the one submission listed
    kaggle.submissions = [{"ref": 7, "date": f"{past(days=1):%Y-%m-%dT%H:%M:%S.000Z}", "description": "run a",
                           "fileName": "submission.csv", "status": "COMPLETE", "publicScore": "0.9", "_lists": 0}]
    line = one_line(run("submissions", env=kaggle.env, cwd=tmp_path))
    assert "HTTP 200" in line and '{"submissions": [{"ref": 7' in line
    assert "Unterminated" not in line and "line 1 column" not in line


def one_line(result) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert_safe(line)
    return line
