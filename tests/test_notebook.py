"""The kernel as a Kaggle notebook: executed top to bottom in a real Jupyter kernel in Kaggle's layout,
and pushed as a notebook (with the push's training options in its settings cell) to the stand-in Kaggle."""
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from digit_recognizer.core.config import WEIGHT_DECAY_GRID
from digit_recognizer.bundle import KERNEL_FILE, NOTEBOOK_FILE
from kaggle_fixtures import SAMPLE, kaggle, one_error_line, project, run, user_env  # noqa: F401

# Run as root inside `unshare -m`: a tmpfs on /kaggle holds Kaggle's layout only in this mount namespace
# (an empty /kaggle is made first where the machine has none, as a mount needs a folder to cover).
DRIVER = r"""
import shutil, subprocess, sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

notebook, data, result = map(Path, sys.argv[1:4])
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
Path("/kaggle").mkdir(exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/kaggle"], check=True)
competition = Path("/kaggle/input/competitions/digit-recognizer")
shutil.copytree(data, competition)
working = Path("/kaggle/working")
working.mkdir()
nb = nbformat.read(notebook, as_version=4)
try:
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(working)}}).execute()
finally:
    nbformat.write(nb, result / "executed.ipynb")
    shutil.copytree(working, result / "working")
"""


def kaggle_data(folder: Path, train_rows: int | None = None) -> Path:
    """The competition's CSVs (the embedded sample's, train.csv cut to its first rows if asked)."""
    folder.mkdir()
    train = gzip.decompress((SAMPLE / "train.csv.gz").read_bytes())
    if train_rows:
        train = b"".join(train.splitlines(keepends=True)[:train_rows + 1])
    (folder / "train.csv").write_bytes(train)
    (folder / "test.csv").write_bytes(gzip.decompress((SAMPLE / "test.csv.gz").read_bytes()))
    return folder


def execute_on_kaggle(notebook_text: str, tmp_path: Path, train_rows: int | None = None):
    """Execute the notebook as Kaggle would; return the executed notebook and the working folder's copy."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("Kaggle's /kaggle layout needs root and unshare(1) for a private mount namespace")
    tmp_path.mkdir(exist_ok=True)
    notebook = tmp_path / "kernel.ipynb"
    notebook.write_text(notebook_text, encoding="utf-8")
    result = tmp_path / "result"
    result.mkdir()
    env = {**os.environ, "KAGGLE_KERNEL_RUN_TYPE": "Batch", "TQDM_DISABLE": ""}
    done = subprocess.run(["unshare", "-m", sys.executable, "-c", DRIVER, str(notebook),
                           str(kaggle_data(tmp_path / "data", train_rows)), str(result)],
                          capture_output=True, text=True, timeout=600, env=env)
    if done.returncode and "unshare failed" in done.stderr:
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((result / "executed.ipynb").read_text(encoding="utf-8")), result / "working"


def outputs(executed: dict) -> list[dict]:
    return [output for cell in executed["cells"] if cell["cell_type"] == "code" for output in cell["outputs"]]


def printed(executed: dict) -> str:
    return "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for o in outputs(executed) if o["output_type"] == "stream")


def code_cells(script: str) -> list[str]:
    """The code of a percent-format script's cells, split at its own `# %%` lines."""
    cells = re.split(r"^# %%.*\n", script, flags=re.MULTILINE)[1:]
    markers = re.findall(r"^# %%.*$", script, flags=re.MULTILINE)
    return [cell.strip("\n") for cell, marker in zip(cells, markers) if marker == "# %%"]


def test_the_committed_notebook_runs_top_to_bottom_in_a_jupyter_kernel_on_kaggle(tmp_path):
    executed, working = execute_on_kaggle((ROOT / NOTEBOOK_FILE).read_text(encoding="utf-8"), tmp_path)
    errors = [o for o in outputs(executed) if o["output_type"] == "error"]
    assert not errors, errors
    names = sorted(p.name for p in working.iterdir())
    lines = (working / "submission.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 1001
    metrics = json.loads((working / "metrics.json").read_text(encoding="utf-8"))
    pictures = metrics["pictures"]
    assert len(pictures) >= 5 and set(pictures) <= set(names) and {"learning_curve.png", "features.png"} <= set(pictures)
    assert {"submission.csv", "metrics.json", "model.pt"} <= set(names)
    # Every picture the run wrote is shown inline, under the cell that ran the kernel, as a PNG.
    inline = [o for o in outputs(executed) if "image/png" in o.get("data", {})]
    assert len(inline) == len(pictures) >= 5
    (run_cell,) = [c for c in executed["cells"] if c["cell_type"] == "code" and "main(settings=SETTINGS)" in
                   "".join(c["source"])]
    assert [o for o in run_cell["outputs"] if "image/png" in o.get("data", {})] == inline
    text = printed(executed)
    assert "train: fitting the model to the optimum by L-BFGS" in text and "validation accuracy: 0." in text
    assert "true\\pred" in text and f"output folder: {Path('/kaggle/working')}" in text
    # The same submission as the script run with the same options (the sample's default run).
    assert metrics["config"]["epochs"] == 10 and metrics["data"] == "/kaggle/input/competitions/digit-recognizer"


def test_push_sends_a_notebook_whose_code_cells_are_the_committed_scripts_code(kaggle, project):
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "as a notebook, with the default options" in result.stdout
    (push,) = kaggle.calls("SaveKernel")
    body = push.json()
    assert body["kernelType"] == "notebook" and body["language"] == "python"
    sent = json.loads(body["text"])
    script = (project / KERNEL_FILE).read_text(encoding="utf-8")
    sent_code = ["".join(cell["source"]) for cell in sent["cells"] if cell["cell_type"] == "code"]
    assert sent_code == code_cells(script) and len(sent_code) > 15
    assert all(not cell.get("outputs") for cell in sent["cells"] if cell["cell_type"] == "code")
    assert sent["metadata"]["kernelspec"]["name"] == "python3"
    (record,) = json.loads((project / "kernel-pushes.json").read_text(encoding="utf-8"))
    assert record["kernel_type"] == "notebook" and record["options"] == {}


def test_push_script_sends_the_committed_script_byte_for_byte(kaggle, project):
    result = run("kernels", "push", "--script", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    body = kaggle.calls("SaveKernel")[0].json()
    assert body["kernelType"] == "script"
    assert body["text"] == (project / KERNEL_FILE).read_text(encoding="utf-8")


def test_push_with_training_options_runs_them_on_kaggle_and_says_so(kaggle, project, tmp_path):
    result = run("kernels", "push", "--folds", "5", "--weight-decay", "auto", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "as a notebook, with --weight-decay auto --folds 5" in result.stdout
    sent = kaggle.calls("SaveKernel")[0].json()["text"]
    (settings,) = [c for c in json.loads(sent)["cells"] if "".join(c["source"]).startswith("SETTINGS = dict(")]
    assert '    folds=5,\n' in "".join(settings["source"]) and '    weight_decay="auto",\n' in "".join(settings["source"])
    # Only the pushed copy changed: the committed kernel keeps the defaults and is still current.
    assert "    folds=0," in (project / KERNEL_FILE).read_text(encoding="utf-8")
    assert run("bundle", "--check", env=kaggle.env, cwd=project).returncode == 0
    (record,) = json.loads((project / "kernel-pushes.json").read_text(encoding="utf-8"))
    assert record["options"] == {"weight_decay": "auto", "folds": 5}

    # Executed (on a 1,000-row train.csv, to keep the test short), it cross-validates with those options.
    executed, working = execute_on_kaggle(sent, tmp_path / "run", train_rows=1000)
    assert "expected public score 0." in printed(executed) and "(5-fold CV), weight decay" in printed(executed)
    metrics = json.loads((working / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["config"]["folds"] == 5 and metrics["config"]["weight_decay"] == "auto"
    assert [g["weight_decay"] for g in metrics["cv"]["grid"]] == list(WEIGHT_DECAY_GRID)

    # The version's status and its fetched output name the options it was pushed with.
    kaggle.versions[1].output_files = {name: (working / name).read_bytes() for name in ("submission.csv",
                                                                                       "metrics.json")}
    status = run("kernels", "status", "--wait", env=kaggle.env, cwd=project)
    assert "version 1: COMPLETE; pushed with --weight-decay auto --folds 5" in status.stdout, status.stderr
    fetched = run("kernels", "output", env=kaggle.env, cwd=project)
    assert fetched.returncode == 0, fetched.stderr
    assert "pushed with --weight-decay auto --folds 5" in fetched.stdout
    folder = Path(project, fetched.stdout.split("run folder: ")[1].split(" (")[0])
    assert json.loads((folder / "origin.json").read_text())["push"]["options"] == record["options"]
    listing = run("runs", "--runs", str(folder.parent), env=kaggle.env, cwd=project)
    assert "weight_decay=auto folds=5" in listing.stdout, listing.stdout
    submitted = run("submit", str(folder), "--data", str(tmp_path / "run" / "data"), env=kaggle.env, cwd=project)
    assert submitted.returncode == 0, submitted.stderr
    scores = run("submissions", "--runs", str(folder.parent), env=kaggle.env, cwd=project)
    assert "v1 (--weight-decay auto --folds 5)" in scores.stdout, scores.stdout + scores.stderr


@pytest.mark.parametrize("flags", [["--folds", "1"], ["--epochs", "0"], ["--weight-decay", "auto"]])
def test_push_or_run_with_a_bad_option_is_refused_before_any_request_with_trains_line(kaggle, project, flags):
    train = run("train", *flags, env=kaggle.env, cwd=project)
    expected = one_error_line(train).removeprefix("digit-recognizer: error: ")
    for command in ("push", "run"):
        line = one_error_line(run("kernels", command, *flags, env=kaggle.env, cwd=project))
        assert line == f"digit-recognizer: error: {expected}"
    assert kaggle.requests == [] and not (project / "kernel-pushes.json").exists()


def test_the_kaggle_clients_own_push_sends_the_committed_notebook(kaggle, project):
    """`kaggle kernels push -p .` reads kernel-metadata.json itself: the notebook goes, as it is committed."""
    metadata_path = project / "kernel-metadata.json"
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    metadata["id"] = metadata["id"].replace("YOUR_KAGGLE_USERNAME", "alice")
    metadata_path.write_text(json.dumps(metadata), encoding="utf-8")
    client = Path(sys.executable).with_name("kaggle")
    done = subprocess.run([str(client), "kernels", "push", "-p", str(project)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **kaggle.env})
    assert done.returncode == 0, done.stderr
    (push,) = kaggle.calls("SaveKernel")
    body = push.json()
    committed = json.loads((ROOT / NOTEBOOK_FILE).read_text(encoding="utf-8"))
    assert body["kernelType"] == "notebook"
    assert ["".join(c["source"]) for c in json.loads(body["text"])["cells"]] == \
        ["".join(c["source"]) for c in committed["cells"]]
