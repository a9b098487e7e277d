"""The parse cache on a real file system with 1-second timestamps (issue 20, class 2): ext4 made with
128-byte inodes, loop-mounted (root only). An edit of the same size within the same second leaves
size, mtime, ctime and inode as they were; the cache must still see it."""
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.local_data import load_data
from test_bad_input import TEST, TRAIN_20, text

IS_ROOT = os.geteuid() == 0


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, timeout=60).returncode == 0


@contextmanager
def coarse_timestamps_fs(where: Path):
    """A fresh ext4 with 128-byte inodes (whole-second timestamps) mounted at `where`; undone after."""
    if not IS_ROOT or not shutil.which("mkfs.ext4"):
        pytest.skip("a loop-mounted ext4 needs root and mkfs.ext4")
    image = where.parent / f"{where.name}.img"
    with open(image, "wb") as handle:
        handle.truncate(16 << 20)
    where.mkdir()
    if not (_run("mkfs.ext4", "-q", "-F", "-I", "128", str(image)) and _run("mount", "-o", "loop", str(image), str(where))):
        image.unlink()
        pytest.skip("mkfs.ext4 or a loop mount was refused here")
    try:
        yield where
    finally:
        if not _run("umount", str(where)):
            _run("umount", "-l", str(where))
        loops = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, timeout=60).stdout
        for line in loops.splitlines():  # mount -o loop detaches on umount; make sure of it
            _run("losetup", "-d", line.split(":", 1)[0])
        image.unlink()


def wait_for_a_fresh_second() -> None:
    time.sleep(1.02 - time.time() % 1)


def test_an_edit_within_the_same_second_on_a_one_second_file_system_is_seen(tmp_path):
    warm = tmp_path / "warm"  # pandas and numpy imported first, so the timed part below is quick
    warm.mkdir()
    (warm / "train.csv").write_bytes(text(TRAIN_20))
    (warm / "test.csv").write_bytes(text(TEST))
    load_data(warm)
    with coarse_timestamps_fs(tmp_path / "ext4") as disk:
        train = disk / "train.csv"
        (disk / "test.csv").write_bytes(text(TEST))
        original = text(TRAIN_20)
        at = original.index(b"\n") + 1  # the first data row's label
        edited = original[:at] + (b"7" if original[at:at + 1] != b"7" else b"3") + original[at + 1:]
        for _ in range(5):  # each try fits in one second; retried if it straddled a second boundary
            wait_for_a_fresh_second()
            train.write_bytes(original)
            first = load_data(disk)  # parsed and cached
            before = train.stat()
            with open(train, "r+b") as handle:  # in place: same inode, same size
                handle.write(edited)
            after = train.stat()
            same = [(s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for s in (before, after)]
            if same[0] == same[1]:
                break
        else:
            pytest.fail("five edits in a row crossed a second boundary; is this file system's clock coarse?")
        assert before.st_mtime_ns % 1_000_000_000 == 0  # whole seconds: the file system the case needs
        again = load_data(disk)
        assert again.train_labels[0] == edited[at] - ord("0") != first.train_labels[0]
        assert np.array_equal(again.train_images, load_data(disk, cache=False).train_images)
