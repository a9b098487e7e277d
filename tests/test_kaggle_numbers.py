"""Numbers a Kaggle command sends (or waits by) are range-checked before any request, with one line
naming the flag and the range it takes (issue 28, class 6)."""
import pytest

from kaggle_fixtures import kaggle, project, run, user_env  # noqa: F401

CASES = [
    (("kernels", "push", "--time-limit", "1e29"), "--time-limit", "from 1 to 43200"),
    (("kernels", "push", "--time-limit", str(10 ** 29)), "--time-limit", "from 1 to 43200"),
    (("kernels", "push", "--time-limit", "0"), "--time-limit", "from 1 to 43200"),
    (("kernels", "run", "--time-limit", "-5"), "--time-limit", "from 1 to 43200"),
    (("kernels", "push", "--timeout", "100000"), "--timeout", "from 1 to 43200"),  # the old spelling, named as typed
    (("leaderboard", "--top", "-1"), "--top", "from 1 to 100"),
    (("leaderboard", "--top", "0"), "--top", "from 1 to 100"),
    (("leaderboard", "--top", str(10 ** 12)), "--top", "from 1 to 100"),
    (("kernels", "status", "--version", "0"), "--version", "from 1 to 2147483647"),
    (("kernels", "output", "--version", str(2 ** 40)), "--version", "from 1 to 2147483647"),
    (("kernels", "logs", "--version", "-1"), "--version", "from 1 to 2147483647"),
    (("submit", "--kernel", "--version", "0"), "--version", "from 1 to 2147483647"),
    (("kernels", "logs", "--follow", "--wait-timeout", "nan"), "--wait-timeout", "from 0.001 to 604800"),
    (("kernels", "status", "--wait", "--wait-timeout", "-1"), "--wait-timeout", "from 0.001 to 604800"),
    (("submit", "--wait", "--wait-timeout", "inf"), "--wait-timeout", "from 0.001 to 604800"),
]


@pytest.mark.parametrize("args, flag, accepted", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_number_out_of_range_is_one_line_before_any_request(kaggle, project, args, flag, accepted):
    result = run(*args, env=kaggle.env, cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert f"argument {flag}" in line and accepted in line, line
    assert kaggle.requests == []
