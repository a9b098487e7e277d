"""Faults of the machine and the environment (issue 12), through the real commands in subprocesses.

Each case asserts the exit code, exactly one error line (or a run that succeeds correctly), no
traceback, and the folders involved hash-identical or all-new afterwards. File-system faults use
real mechanisms: a small tmpfs and read-only bind mounts when the tests run as root, permissions
otherwise, and a skip saying why where neither works.
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from conftest import past_run_id, run_cli
from digit_recognizer.kernel import PICTURES
from digit_recognizer.notebook import SCRIPT_NAME, SOURCE
from digit_recognizer.run_folders import RUN_ID_PATTERN
from test_bad_input import PREFIX, TEST, TRAIN_20, earlier_run, snapshot, text

KERNEL_PREFIX = f"{SCRIPT_NAME}: error: "
KERNEL_OUTPUTS = {"submission.csv", "model.pt", "metrics.json", *PICTURES}
IS_ROOT = os.geteuid() == 0
PROGRESS = re.compile(r"^(train|refit|\d+-fold CV)\b.*(L-BFGS|by L-BFGS)")  # training's progress lines, not messages
# A run that stays in its fit for seconds on any machine: 20 folds x 4 strengths of the 4,000-digit sample.
SLOW = ("--folds", "20", "--weight-decay", "auto")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    """Every file below folder (hidden ones included) -> its sha256."""
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def write_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_bytes(text(TRAIN_20))
    (folder / "test.csv").write_bytes(text(TEST))
    return folder


def one_error_line(result, prefix: str = PREFIX, code: int = 2) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    return lines[0]


# ---------------------------------------------------------------- mechanisms: tmpfs, read-only mounts

def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def small_tmpfs(where: Path, size: str):
    """A real file system of `size` at `where` (root only)."""
    where.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT or not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)):
        pytest.skip("a small tmpfs needs root and mount(8); not available here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@contextmanager
def read_only(folder: Path):
    """folder made read-only: a read-only bind mount over itself as root, else permissions."""
    if IS_ROOT:
        if not (_mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,ro,bind", str(folder))):
            pytest.skip("a read-only bind mount failed here (mount(8) refused)")
        try:
            yield folder
        finally:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        return
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(mode)


def fill(folder: Path) -> None:
    """Use up every free byte of folder's file system."""
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    with suppress_oserror():
        with open(folder / "filler2", "wb") as handle:
            while True:
                handle.write(b"\0")
                handle.flush()


@contextmanager
def suppress_oserror():
    try:
        yield
    except OSError:
        pass


# ---------------------------------------------------------------- class 1: the kernel writes each output whole

def kernel_script(folder: Path) -> Path:
    """The script form, under the name a push gives it."""
    script = folder / SCRIPT_NAME
    if not script.exists():
        shutil.copy(SOURCE, script)
    return script


def kernel_command(data: Path, out: Path, seed: int) -> list[str]:
    return [sys.executable, str(kernel_script(data.parent)), "--input", str(data), "--output", str(out),
            "--seed", str(seed)]


def outputs_of_seed(out: Path, seed: int) -> bool:
    """out holds a complete set of outputs, every one from the run with this seed."""
    import torch

    if not KERNEL_OUTPUTS <= {p.name for p in out.iterdir()}:
        return False
    metrics = json.loads((out / "metrics.json").read_text())
    saved = torch.load(out / "model.pt", weights_only=True)
    rows = (out / "submission.csv").read_text().count("\n") - 1
    return metrics["config"]["seed"] == seed and saved["config"]["seed"] == seed and rows == len(TEST) - 1


@pytest.fixture(scope="module")
def old_outputs(tmp_path_factory) -> Path:
    """A kernel's complete outputs (seed 1), made once and copied by each test."""
    root = tmp_path_factory.mktemp("old")
    first = subprocess.run(kernel_command(write_data(root / "data"), root / "output", seed=1),
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert {p.name for p in (root / "output").iterdir()} == KERNEL_OUTPUTS
    return root


def kill_once_written(command: list[str], path: Path, signum: int) -> subprocess.Popen:
    """Start the kernel and send it `signum` the moment a new `path` is renamed into place (a new inode)."""
    old = path.stat().st_ino
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if path.stat().st_ino != old:
            process.send_signal(signum)
            break
        time.sleep(0.001)
    return process


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_kernel_stopped_during_its_writes_leaves_each_output_whole_and_metrics_json_last(tmp_path, old_outputs,
                                                                                          signum):
    """Stopped just after writing submission.csv: that file is all new, metrics.json (written last) all old."""
    shutil.copytree(old_outputs, tmp_path, dirs_exist_ok=True)
    data, out = tmp_path / "data", tmp_path / "output"
    old = tree(out)
    process = kill_once_written(kernel_command(data, out, seed=2), out / "submission.csv", signum)
    stderr = process.communicate(timeout=60)[1].decode()
    # The signal landed where intended: during the writes, after submission.csv and before metrics.json.
    assert process.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 130), stderr
    assert tree(out)["metrics.json"] == old["metrics.json"], "the signal came after the last write"
    submission = (out / "submission.csv").read_text()
    assert submission.startswith("ImageId,Label\n") and submission.count("\n") == len(TEST)
    for name in KERNEL_OUTPUTS - {"submission.csv", "metrics.json"}:  # each one old or wholly new, never torn
        assert name in tree(out)
    if signum == signal.SIGINT:
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1] == (f"{SCRIPT_NAME}: interrupted; each output written "
                                                   "so far is complete, the others are as they were")
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "a temporary file was left"
    # A later run replaces every output and leaves nothing of its own behind.
    again = subprocess.run(kernel_command(data, out, seed=3), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert outputs_of_seed(out, 3)


def test_kernel_output_keeps_everything_it_did_not_write(tmp_path):
    """An --output holding the user's files and an older kit's staging folder: only the kernel's own files change."""
    data, out = write_data(tmp_path / "data"), tmp_path / "output"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    (out / "submission.csv").write_text("an older submission\n")
    staging = out / ".incomplete-123-abcdef"  # e.g. an older kernel's, or another program's
    staging.mkdir()
    (staging / "model.pt").write_bytes(b"someone else's")
    beside = tmp_path / ".output.incomplete-999999-abcdef"
    beside.mkdir()
    done = subprocess.run(kernel_command(data, out, seed=4), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "notes.txt").read_text() == "mine\n" and (staging / "model.pt").read_bytes() == b"someone else's"
    assert beside.is_dir()
    assert {p.name for p in out.iterdir()} == KERNEL_OUTPUTS | {"notes.txt", staging.name}
    assert (out / "submission.csv").read_text().startswith("ImageId,Label\n")


# ---------------------------------------------------------------- class 2: operating-system errors are one line

def run_kernel(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(kernel_script(cwd)), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def faulty(tmp_path, old_outputs):
    """A working folder: data/, submissions/ with an earlier run, a kernel's output/, a model; mounts undone after."""
    write_data(tmp_path / "data")
    earlier_run(tmp_path / "submissions")
    shutil.copytree(old_outputs / "output", tmp_path / "output")
    with ExitStack() as mounts:
        yield tmp_path, mounts


def fill_leaving(folder: Path, free_bytes: int) -> None:
    """Fill folder's file system, then free about `free_bytes` of it again."""
    reserve = folder / "reserve"
    reserve.write_bytes(b"\0" * free_bytes)
    fill(folder)
    reserve.unlink()


def train_into_read_only_runs(work: Path, mounts: ExitStack):
    mounts.enter_context(read_only(work / "submissions"))
    return run_cli("train", "--data", "data", "--out", "submissions", cwd=work), \
        ["submissions: cannot write a run folder there", "read-only file system" if IS_ROOT else "permission denied"]


def train_into_a_full_disk(work: Path, mounts: ExitStack):
    disk = mounts.enter_context(small_tmpfs(work / "disk", "256k"))
    earlier_run(disk / "runs")
    fill(disk)
    return run_cli("train", "--data", "data", "--out", "disk/runs", cwd=work), \
        ["disk/runs", "no space left on device"]


def model_save_on_a_full_disk(work: Path, mounts: ExitStack):
    """Room for submission.csv, not for model.pt (about 33 kB)."""
    disk = mounts.enter_context(small_tmpfs(work / "disk", "256k"))
    earlier_run(disk / "runs")
    fill_leaving(disk, 12 * 1024)
    return run_cli("train", "--data", "data", "--out", "disk/runs", cwd=work), \
        ["/model.pt: cannot write it (no space left on device)"]


def predict_into_a_missing_folder(work: Path, mounts: ExitStack):
    return run_cli("predict", "--model", "output/model.pt", "--out", "nowhere/sub.csv", cwd=work), \
        ["nowhere/sub.csv: cannot write it: the folder nowhere does not exist"]


def kernel_into_read_only_output(work: Path, mounts: ExitStack):
    mounts.enter_context(read_only(work / "output"))
    return run_kernel("--input", "data", "--output", "output", cwd=work), \
        ["output: cannot write the outputs there", "read-only file system" if IS_ROOT else "permission denied"]


def kernel_into_read_only_parent(work: Path, mounts: ExitStack):
    (work / "ro").mkdir()
    mounts.enter_context(read_only(work / "ro"))
    return run_kernel("--input", "data", "--output", "ro/new/output", cwd=work), \
        ["ro/new/output: cannot create it", "read-only file system" if IS_ROOT else "permission denied"]


OS_FAULTS = {f.__name__: f for f in (train_into_read_only_runs, train_into_a_full_disk, model_save_on_a_full_disk,
                                     predict_into_a_missing_folder, kernel_into_read_only_output,
                                     kernel_into_read_only_parent)}


@pytest.mark.parametrize("case", list(OS_FAULTS))
def test_operating_system_error(faulty, case):
    work, mounts = faulty
    before = snapshot(work)
    result, fragments = OS_FAULTS[case](work, mounts)
    after = snapshot(work)
    prefix = KERNEL_PREFIX if "kernel" in case else PREFIX
    line = one_error_line(result, prefix)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    made = {k: v for k, v in after.items() if k not in before}
    assert all(k.startswith(("disk", "ro", SCRIPT_NAME)) for k in made), made  # only what the case set up
    assert {k: v for k, v in after.items() if k in before} == before, "an earlier file changed"
    assert not [k for k in after if ".incomplete-" in k or k.endswith(".tmp")], "something half-written was left"


# ---------------------------------------------------------------- class 5: damaged records

def test_runs_lists_every_run_and_marks_one_with_a_number_too_large_for_a_float(tmp_path):
    good, huge, config = past_run_id("good00", days=1), past_run_id("huge00"), past_run_id("confg0", days=2)
    for run, metrics in ((good, '{"val_accuracy": 0.9}'), (huge, '{"val_accuracy": 1' + "0" * 400 + "}"),
                         (config, '{"val_accuracy": 0.8, "config": {"folds": 1' + "0" * 400 + "}}")):
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.json").write_text(metrics)
    (tmp_path / good / "kaggle_submissions.json").write_text('[{"public_score": 1' + "0" * 400 + "}]")
    before = snapshot(tmp_path)
    result = run_cli("runs", "--dir", str(tmp_path))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}  # header, rows, what ranks them
    assert set(rows) == {good, huge, config}
    assert "0.9000" in rows[good] and "damaged kaggle_submissions.json" in rows[good]
    assert "damaged metrics.json" in rows[huge] and "damaged metrics.json" in rows[config]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("contents", ["no state_dict", "wrong shapes", "state_dict not a dict"])
def test_a_model_that_claims_to_be_ours_but_is_not_is_one_line(tmp_path, contents):
    import torch

    saved = {"format": 1, "use_deskew": True}
    if contents == "wrong shapes":
        saved["state_dict"] = {"linear.weight": torch.zeros(3, 3), "linear.bias": torch.zeros(3),
                               "mean": torch.zeros(784), "std": torch.ones(784)}
    elif contents == "state_dict not a dict":
        saved["state_dict"] = [1, 2, 3]
    torch.save(saved, tmp_path / "model.pt")
    before = snapshot(tmp_path)
    result = run_cli("predict", "--model", "model.pt", cwd=tmp_path)
    one_error_line(result)
    assert "model.pt: not a model saved by digit-recognizer" in result.stderr
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- class 6: interrupts at the edges

def slow_train(data: Path | None, out: Path, *extra: str) -> subprocess.Popen:
    """`train` in the background (on the embedded sample when `data` is None)."""
    where = ["--data", str(data)] if data else []
    return subprocess.Popen([sys.executable, "-m", "digit_recognizer", "train", *where, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_ctrl_c_while_starting_up_is_one_line_and_writes_nothing(tmp_path, delay):
    data, out = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(out)
    before = snapshot(tmp_path)
    process = slow_train(data, out)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    assert snapshot(tmp_path) == before
    if process.returncode == -signal.SIGINT:  # before Python itself was ready: nothing ran, nothing said
        assert stderr == ""
        return
    assert process.returncode == 130, (process.returncode, stderr)
    assert len(stderr.splitlines()) == 1 and stderr.startswith("digit-recognizer: interrupted"), stderr


def test_a_second_ctrl_c_during_clean_up_is_ignored(tmp_path):
    data, out = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(out)
    before = snapshot(tmp_path)
    process = slow_train(None, out, *SLOW)
    deadline = time.monotonic() + 120
    while not list(out.glob(".incomplete-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(5):  # an impatient user
        process.send_signal(signal.SIGINT)
        time.sleep(0.003)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    messages = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("digit-recognizer")]
    assert messages == ["digit-recognizer: interrupted; no run folder was left behind and earlier runs are untouched"]
    assert snapshot(tmp_path) == before


def test_ctrl_c_just_after_the_run_folder_is_published_says_it_was_kept(tmp_path):
    """The interrupt lands, every time, between the run folder's publication and the end of the command.

    The command's stdout is a pipe this test holds nearly full (unbuffered, so each line is written as it
    is printed): the lines before publication fit, the report after it does not, so the command is held
    in its report with the run published until the test reads. Then Ctrl-C.
    """
    data, out = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(out)
    before = set(out.iterdir())
    read_end, write_end = os.pipe()
    room = 512  # the data line and the fit's two progress lines (about 250 bytes) fit; the report (1,500) does not
    filler = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) - room
    os.write(write_end, b"\0" * filler)
    process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", "train", "--data", str(data), "--out",
                                str(out)], stdout=write_end, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(write_end)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in set(out.iterdir()) - before if RUN_ID_PATTERN.fullmatch(p.name)]:
            assert process.poll() is None and time.monotonic() < deadline, "the run was never published"
            time.sleep(0.01)
        assert process.poll() is None  # held in its report: the signal lands after publication, before the end
        process.send_signal(signal.SIGINT)
        with os.fdopen(read_end, "rb") as reader:
            stdout = reader.read()[filler:].decode()
        stderr = process.communicate(timeout=120)[1].decode()
    finally:
        process.kill()
    (run,) = [p for p in set(out.iterdir()) - before]
    assert RUN_ID_PATTERN.fullmatch(run.name) and "Traceback" not in stderr, stderr
    assert process.returncode == 130, (process.returncode, stderr)
    messages = [line for line in stderr.splitlines() if line.startswith("digit-recognizer")]
    assert messages == [f"digit-recognizer: interrupted; the run folder {run} was complete and is kept; "
                        "earlier runs are untouched"], stderr
    assert "train: fitting the model to the optimum by L-BFGS" in stdout and f"run folder: {run}" not in stdout
    assert {p.name for p in run.iterdir()} >= {"submission.csv", "model.pt", "metrics.json"}


# ---------------------------------------------------------------- class 7: odd environments

def test_a_path_that_is_not_utf8_works_and_is_shown_escaped(tmp_path):
    data = write_data(tmp_path / "data")
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/d\xffta"))
    data.rename(odd)
    result = run_cli("train", "--data", str(odd), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    missing = subprocess.run([sys.executable, "-m", "digit_recognizer", "train", "--data",
                              bytes(tmp_path) + b"/n\xffwhere"], capture_output=True, cwd=tmp_path)
    assert missing.returncode == 2 and b"Traceback" not in missing.stderr
    assert missing.stderr.count(b"\n") == 1 and b"no such folder" in missing.stderr, missing.stderr


@pytest.mark.parametrize("home", ["", "/"], ids=["HOME empty", "HOME is /"])
def test_no_usable_home_still_trains_and_caches_outside_root_and_here(tmp_path, home):
    """(HOME unset with no password entry: tests/test_cache.py, in-process, as no such user can run Python here.)"""
    data = write_data(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "DIGIT_RECOGNIZER_CACHE")}
    env["HOME"] = home
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    result = subprocess.run([sys.executable, "-m", "digit_recognizer", "train", "--data", "data", "--out", "runs"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / ".cache").exists() and not Path("/.cache/digit-recognizer").exists()
    assert any((tmp_path / "tmp").glob("digit-recognizer-cache-*/*.entry"))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_csv_is_one_line_saying_save_it_as_utf8(tmp_path, encoding):
    data = write_data(tmp_path / "data")
    (data / "train.csv").write_bytes(text(TRAIN_20).decode().encode(encoding))
    before = snapshot(tmp_path)
    result = run_cli("train", "--data", "data", "--out", "runs", cwd=tmp_path)
    line = one_error_line(result)
    assert "data/train.csv: not UTF-8/ASCII text" in line and "save it as UTF-8" in line
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- class 3: the parse cache never changes a result

def test_runs_through_an_edited_csv_and_a_damaged_entry_give_the_uncached_result(tmp_path):
    data, cache_folder = write_data(tmp_path / "data"), tmp_path / "cache"
    env = {"DIGIT_RECOGNIZER_CACHE": str(cache_folder)}

    def train(*extra: str) -> Path:
        result = run_cli("train", "--data", "data", "--out", "runs", *extra, cwd=tmp_path, env=env)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return Path(tmp_path / result.stdout.split("run folder: ")[1].split("\n")[0])

    first = train()  # fills the cache
    labels = (first / "submission.csv").read_text().splitlines()[1:]
    a, b = next((a, b) for a in range(len(labels)) for b in range(a) if labels[a][-1] != labels[b][-1])
    path = data / "test.csv"
    stat = path.stat()
    lines = path.read_bytes().split(b"\n")
    lines[1 + a], lines[1 + b] = lines[1 + b], lines[1 + a]  # two test images swapped: same size, new answer
    with open(path, "r+b") as handle:  # in place, and the modification time set back
        handle.write(b"\n".join(lines))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (train_entry,) = [p for p in cache_folder.iterdir()
                      if p.suffix == ".entry" and b'"shape": [200, 785]' in p.read_bytes()[:600]]
    damaged = bytearray(train_entry.read_bytes())
    damaged[-1] ^= 0xFF  # the last pixel of the last training image
    train_entry.write_bytes(damaged)
    cached, uncached = train(), train("--no-cache")
    assert sha(cached / "submission.csv") == sha(uncached / "submission.csv") != sha(first / "submission.csv")
    assert json.loads((cached / "metrics.json").read_text())["confusion_matrix"] == \
        json.loads((uncached / "metrics.json").read_text())["confusion_matrix"]
    assert not [p for p in cache_folder.iterdir() if p.suffix == ".tmp"]
