"""The kernel as a Kaggle notebook: jupytext's conversion of the source, executed step by step in a real
Jupyter kernel in Kaggle's layout, and pushed (with the push's training options in its settings cell) to the
stand-in Kaggle."""
import gzip
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from conftest import ROOT, run_cli
from digit_recognizer.kernel import AUTO_C_GRID
from digit_recognizer.notebook import NOTEBOOK_FILE, SOURCE, staleness
from kaggle_fixtures import SAMPLE, kaggle, one_error_line, project, run, user_env  # noqa: F401

# Run as root inside `unshare -m`: a tmpfs on /kaggle holds Kaggle's layout only in this mount namespace.
# A mount needs a folder to cover: where the machine has no /kaggle, an empty one is made for the mount
# and removed again afterwards, so the machine is left as it was.
DRIVER = r"""
import shutil, subprocess, sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

notebook, data, result = map(Path, sys.argv[1:4])
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
made = not Path("/kaggle").exists()
Path("/kaggle").mkdir(exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/kaggle"], check=True)
try:
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
finally:
    subprocess.run(["umount", "/kaggle"], check=True)
    if made:
        Path("/kaggle").rmdir()
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


def printed(cell_or_notebook: dict) -> str:
    """The text a cell (or every cell of a notebook) printed."""
    found = cell_or_notebook["outputs"] if "outputs" in cell_or_notebook else outputs(cell_or_notebook)
    return "".join(o["text"] if isinstance(o["text"], str) else "".join(o["text"])
                   for o in found if o["output_type"] == "stream")


def cell(executed: dict, starts: str) -> dict:
    """The one code cell whose source starts with `starts`."""
    (found,) = [c for c in executed["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(starts)]
    return found


def shown(cell_: dict, kind: str) -> list[str]:
    """The `kind` outputs ("image/png", "text/html", ...) a cell displayed, in order."""
    return ["".join(o["data"][kind]) for o in cell_["outputs"] if kind in o.get("data", {})]


def code_cells(text: str, fmt: str) -> list[str]:
    """The code of every code cell of a notebook or percent-format script, as jupytext reads it."""
    notebook = jupytext.reads(text, fmt=fmt)
    return [c.source for c in notebook.cells if c.cell_type == "code"]


def test_the_committed_notebook_is_jupytexts_conversion_of_the_source_and_the_stale_check_says_how_to_fix_it(
        tmp_path):
    assert staleness(ROOT) is None, staleness(ROOT)
    project = tmp_path / "project"
    (project / "kernel").mkdir(parents=True)
    notebook = json.loads((ROOT / NOTEBOOK_FILE).read_text(encoding="utf-8"))
    notebook["cells"][3]["source"] = "WEIGHT_DECAY_GRID = (0.5,)\n"  # an edit by hand, not from the source
    (project / NOTEBOOK_FILE).write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    message = staleness(project)
    assert message.startswith(f"{project / NOTEBOOK_FILE} is not jupytext's conversion of ") and " run " in message
    # The command it prints runs as printed, and makes the notebook jupytext's conversion again.
    fix = message.split("; run ", 1)[1]
    assert subprocess.run(shlex.split(fix), cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    assert staleness(project) is None
    assert code_cells((project / NOTEBOOK_FILE).read_text(encoding="utf-8"), "ipynb") == \
        code_cells(SOURCE.read_text(encoding="utf-8"), "py:percent")


def test_the_notebook_runs_step_by_step_in_a_jupyter_kernel_on_kaggle_and_writes_trains_submission(tmp_path):
    executed, working = execute_on_kaggle((ROOT / NOTEBOOK_FILE).read_text(encoding="utf-8"), tmp_path)
    errors = [o for o in outputs(executed) if o["output_type"] == "error"]
    assert not errors, errors
    # Each step shows what it did under the cell that did it.
    settings = printed(cell(executed, "config = Config.from_settings(SETTINGS)"))
    assert settings.startswith("Config(seed=0, val_fraction=0.1") and "training on cpu" in settings
    data = cell(executed, "data = load_data(find_data())")
    assert "data: /kaggle/input/competitions/digit-recognizer" in printed(data)
    assert "train images (4000, 784) uint8, labels (4000,); test images (1000, 784)" in printed(data)
    assert "images per digit: 0: 400, 1: 400" in printed(data) and len(shown(data, "image/png")) == 1
    assert len(shown(cell(executed, "ladder = features_picture("), "image/png")) == 1
    assert "Linear(in_features=1176, out_features=10" in "".join(shown(cell(executed, "SoftmaxRegression("),
                                                                         "text/plain"))
    fit = cell(executed, "training = train(config, data, device)")
    assert "train: fitting the model to the optimum by L-BFGS" in printed(fit)
    assert "the hold-out fit: fitted to the optimum by L-BFGS in " in printed(fit)
    assert len(shown(fit, "image/png")) == 1  # the learning curve
    validation = cell(executed, "truth = data.train_labels[training.validated]")
    assert "validation accuracy: 0.9775 (400 images)" in printed(validation) and "true\\pred" in printed(validation)
    assert len(shown(validation, "image/png")) == 1  # the confusion matrix
    assert len(shown(cell(executed, "mistakes = mistakes_picture("), "image/png")) == 1
    assert len(shown(cell(executed, "weights = weights_picture("), "image/png")) == 1
    assert "set folds=5 in SETTINGS" in printed(cell(executed, "if training.cv:"))
    head = shown(cell(executed, "test_labels = predict("), "text/plain")
    assert len(head) == 1 and head[0].splitlines()[0].split() == ["ImageId", "Label"] and len(head[0].splitlines()) == 6
    written = printed(cell(executed, "out = default_output()"))
    assert f"output folder: {Path('/kaggle/working')}" in written and "validation accuracy: 0.9775" in written

    names = sorted(p.name for p in working.iterdir())
    metrics = json.loads((working / "metrics.json").read_text(encoding="utf-8"))
    assert sorted(metrics["pictures"]) == sorted(["weights.png", "errors.png", "confusion.png",
                                                  "learning_curve.png", "features.png"])
    assert sorted(["submission.csv", "metrics.json", "model.pt", *metrics["pictures"]]) == names
    assert metrics["data"] == "/kaggle/input/competitions/digit-recognizer" and metrics["format"] == 2
    # The pictures written are the very ones shown under their cells.
    shown_pngs = {hashlib.sha256(__import__("base64").b64decode(png)).hexdigest()
                  for png in (p for c in executed["cells"] if c["cell_type"] == "code" for p in shown(c, "image/png"))}
    assert {hashlib.sha256((working / name).read_bytes()).hexdigest() for name in metrics["pictures"]} <= shown_pngs

    # `digit-recognizer train` and the script form write the very same submission.csv on the same data.
    trained = run_cli("train", "--data", str(tmp_path / "data"), "--runs", str(tmp_path / "runs"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    [run_folder] = (tmp_path / "runs").iterdir()
    script = tmp_path / "script"
    script.mkdir()
    shutil.copy(SOURCE, script / "digit_recognizer_kernel.py")
    done = subprocess.run([sys.executable, "digit_recognizer_kernel.py", "--input", str(tmp_path / "data"),
                           "--output", str(script / "out")], cwd=script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    notebook_submission = (working / "submission.csv").read_bytes()
    assert (run_folder / "submission.csv").read_bytes() == notebook_submission
    assert (script / "out" / "submission.csv").read_bytes() == notebook_submission


def test_push_sends_the_committed_notebook(kaggle, project):
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "as a notebook, with the default options" in result.stdout
    (push,) = kaggle.calls("SaveKernel")
    body = push.json()
    assert body["kernelType"] == "notebook" and body["language"] == "python"
    sent = json.loads(body["text"])
    assert code_cells(body["text"], "ipynb") == code_cells(SOURCE.read_text(encoding="utf-8"), "py:percent")
    committed = json.loads((ROOT / NOTEBOOK_FILE).read_text(encoding="utf-8"))["cells"]
    # The client joins each cell's list of lines into one string before sending; nothing else differs.
    assert [{**c, "source": "".join(c["source"])} for c in sent["cells"]] == \
        [{**c, "source": "".join(c["source"])} for c in committed]
    assert all(not cell.get("outputs") for cell in sent["cells"] if cell["cell_type"] == "code")
    assert sent["metadata"]["kernelspec"]["name"] == "python3"
    (record,) = json.loads((project / "kernel-pushes.json").read_text(encoding="utf-8"))
    assert record["kernel_type"] == "notebook" and record["options"] == {}


def test_push_script_sends_the_script_form_of_the_same_notebook(kaggle, project, tmp_path):
    result = run("kernels", "push", "--script", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    body = kaggle.calls("SaveKernel")[0].json()
    assert body["kernelType"] == "script"
    assert code_cells(body["text"], "py:percent") == code_cells(SOURCE.read_text(encoding="utf-8"), "py:percent")
    # It runs as the script it is (here --help, which a push never passes: Kaggle passes no arguments).
    (tmp_path / "pushed.py").write_text(body["text"], encoding="utf-8")
    helped = subprocess.run([sys.executable, str(tmp_path / "pushed.py"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and "--weight-decay" in helped.stdout, helped.stderr


def test_push_with_training_options_runs_them_on_kaggle_and_says_so(kaggle, project, tmp_path):
    result = run("kernels", "push", "--folds", "5", "--weight-decay", "auto", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "as a notebook, with --weight-decay auto --folds 5" in result.stdout
    sent = kaggle.calls("SaveKernel")[0].json()["text"]
    committed = (project / NOTEBOOK_FILE).read_text(encoding="utf-8")
    (settings,) = [c for c in json.loads(sent)["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert "".join(settings["source"]) == "SETTINGS = dict(weight_decay='auto', folds=5)"
    # Only the settings cell differs from the committed notebook, which keeps the defaults and is still current.
    sources = [["".join(c["source"]) for c in json.loads(text)["cells"]] for text in (sent, committed)]
    assert [a for a, b in zip(*sources) if a != b] == ["SETTINGS = dict(weight_decay='auto', folds=5)"]
    assert "SETTINGS = dict()" in committed and staleness(project) is None
    (record,) = json.loads((project / "kernel-pushes.json").read_text(encoding="utf-8"))
    assert record["options"] == {"weight_decay": "auto", "folds": 5}

    # Executed (on a 1,000-row train.csv, to keep the test short), it cross-validates with those options.
    executed, working = execute_on_kaggle(sent, tmp_path / "run", train_rows=1000)
    assert "expected public score 0." in printed(executed) and "(5-fold CV), C = " in printed(executed)
    assert "5-fold CV: fitted to the optimum by L-BFGS" in printed(cell(executed, "training = train("))
    metrics = json.loads((working / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["config"]["folds"] == 5 and metrics["config"]["weight_decay"] == "auto"
    assert [g["c"] for g in metrics["cv"]["grid"]] == list(AUTO_C_GRID)

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


@pytest.mark.parametrize("flags", [["--folds", "1"], ["--weight-decay", "-1e-3"], ["--weight-decay", "auto"],
                                   ["--epochs", "3"]])
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
