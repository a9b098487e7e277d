"""The Kaggle notebook, kernel/digit_recognizer_kernel.ipynb: jupytext's conversion of kernel.py and nothing else.

kernel.py, the package's training core, is the one hand-written source, in jupytext's percent format. The
notebook made from it is committed (so that a plain `kaggle kernels push -p .` sends it too) and must stay
jupytext's conversion of today's source: jupytext's --update keeps the committed notebook's cell ids, so
converting an unchanged source gives the same bytes, and any difference means the notebook is stale.

A push sends a copy whose settings cell (the cell tagged "parameters", papermill's convention) holds the
push's training options; `--script` sends the same copy as the script, jupytext's percent format again.
"""
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "kernel.py"  # the package's own: what train and the tests run
NOTEBOOK_FILE = Path("kernel") / "digit_recognizer_kernel.ipynb"  # in the project folder, beside its metadata
SCRIPT_NAME = "digit_recognizer_kernel.py"  # the script form's name in a push
SETTINGS_TAG = "parameters"


def conversion_command(root: Path) -> str:
    """The command that makes the notebook from the source, runnable as printed from `root`."""
    return shlex.join([sys.executable, "-m", "jupytext", "--update", "--to", "ipynb", "--output",
                       str(root / NOTEBOOK_FILE), shown_path(SOURCE)])


def shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def convert(source: Path, notebook: Path) -> None:
    """jupytext's own conversion, as conversion_command runs it, into `notebook` (updated in place).

    Its notary (which trusts and signs notebooks) is kept in memory: by default it writes a database and a
    secret into the user's Jupyter data folder, and a check must leave the user's files alone."""
    from jupytext.cli import jupytext  # jupytext comes with the kaggle client, which converts scripts with it
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary(db_file=":memory:", secret=b"digit-recognizer: a check, not a signature anyone keeps")
    jupytext(["--quiet", "--update", "--to", "ipynb", "--output", str(notebook), str(source)], notary=notary)


def staleness(root: Path) -> str | None:
    """None when root's notebook is jupytext's conversion of the package's kernel.py; else one line saying
    what to run."""
    committed = root / NOTEBOOK_FILE
    if not committed.is_file():
        return f"{committed}: no such file; make it with: {conversion_command(root)}"
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-notebook-") as stage:
        fresh = Path(stage) / NOTEBOOK_FILE.name
        shutil.copyfile(committed, fresh)
        convert(SOURCE, fresh)
        if fresh.read_bytes() == committed.read_bytes():
            return None
    return (f"{committed} is not jupytext's conversion of {shown_path(SOURCE)} as it is now; run "
            f"{conversion_command(root)}")


def settings_source(settings: dict) -> str:
    """The settings cell's code: SETTINGS = dict(folds=5, weight_decay='auto')."""
    return f"SETTINGS = dict({', '.join(f'{name}={value!r}' for name, value in settings.items())})"


def pushed_copy(root: Path, settings: dict, script: bool = False) -> str:
    """The text a push sends: root's notebook, with `settings` in its settings cell; as the script with
    `script`. Only the settings cell differs from the committed notebook."""
    import jupytext

    notebook = jupytext.read(root / NOTEBOOK_FILE)
    (cell,) = [cell for cell in notebook.cells if SETTINGS_TAG in cell.metadata.get("tags", [])]
    if settings:
        cell.source = settings_source(settings)
    return jupytext.writes(notebook, fmt="py:percent" if script else "ipynb")
