"""Ctrl-C and SIGTERM during a real training run: a clean message, exit 130 (143 for SIGTERM), no run folder left behind."""
import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from digit_recognizer.local_data import SAMPLE_DIR
from test_bad_input import earlier_run, snapshot

MESSAGE = "digit-recognizer: {}; no run folder was left behind and earlier runs are untouched"


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory) -> Path:
    """8,000 training images (the sample twice): 20 folds x 4 strengths take far longer than the test waits."""
    folder = tmp_path_factory.mktemp("slow_data")
    train = gzip.decompress((SAMPLE_DIR / "train.csv.gz").read_bytes())
    header, rows = train.split(b"\n", 1)
    (folder / "train.csv").write_bytes(header + b"\n" + rows + rows)
    (folder / "test.csv").write_bytes(gzip.decompress((SAMPLE_DIR / "test.csv.gz").read_bytes()))
    return folder


class Training:
    """`digit-recognizer train` in a subprocess, its stderr collected as it comes."""

    def __init__(self, data: Path, out: Path):
        self.out = out
        self.process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", "train", "--data", str(data),
                                         "--out", str(out), "--folds", "20", "--weight-decay", "auto"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
        self.stderr = self.stdout = b""
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in ("stderr", "stdout")]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str):
        while chunk := os.read(getattr(self.process, name).fileno(), 4096):
            setattr(self, name, getattr(self, name) + chunk)

    def wait_for(self, ready, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            if ready():
                return True
            time.sleep(0.05)
        return ready()

    def started(self) -> bool:
        return any(p.name.startswith(".incomplete-") for p in self.out.iterdir())

    def finish(self, signum: int) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        for reader in self.readers:
            reader.join(timeout=10)
        return code, self.stdout.decode(), self.stderr.decode()


def on_a_clean_line(stderr: str, message: str) -> bool:
    """The message starts a line, or follows a progress bar that was blanked with spaces first."""
    before = stderr.rpartition(message)[0].rpartition("\n")[2]  # the message's line, up to the message
    return before == "" or (before.endswith("\r") and before.split("\r")[-2].strip() == "")


@pytest.mark.parametrize("signum, word, during", [(signal.SIGINT, "interrupted", "fit"),
                                                  (signal.SIGTERM, "terminated", "setup")],
                         ids=["SIGINT during the fit", "SIGTERM during setup"])
def test_signal_ends_training_cleanly(tmp_path: Path, slow_data: Path, signum: int, word: str, during: str):
    out = tmp_path / "submissions"
    earlier_run(out)
    before = snapshot(out)
    run = Training(slow_data, out)
    try:
        assert run.wait_for(run.started, 120), f"training never started: {run.stderr[-2000:]!r}"
        if during == "fit":  # wait for the fit's progress lines (piped output: plain lines)
            run.wait_for(lambda: b"20-fold CV L-BFGS iteration " in run.stdout, 120)
        assert run.process.poll() is None, "training ended before the signal"
        code, stdout, stderr = run.finish(signum)
    finally:
        run.process.kill()
    message = MESSAGE.format(word)
    assert code == (143 if signum == signal.SIGTERM else 130), stderr
    assert "Traceback" not in stderr
    assert stderr.replace("\r", "\n").rstrip().rpartition("\n")[2] == message, stderr[-500:]
    assert stderr.count("digit-recognizer:") == 1 and on_a_clean_line(stderr, message), stderr[-500:]
    if during == "fit":
        assert "20-fold CV L-BFGS iteration " in stdout  # the fit was under way, and the message got a line of its own
    assert "run folder:" not in stdout
    assert snapshot(out) == before  # no .incomplete-* folder, no new run, the earlier run untouched
