"""Where the data is (below --input, default /kaggle/input) and where the outputs go.

The output folder is checked before minutes of training, not after them."""
import os
import tempfile
from pathlib import Path

from .errors import UserError
from .fileio import os_reason
from .flags import KAGGLE_INPUT, KAGGLE_WORKING


def locate_input(given: Path | None) -> Path:
    """The shallowest folder in --input (default /kaggle/input) holding both train.csv and test.csv."""
    root = given or KAGGLE_INPUT
    for train in sorted(root.rglob("train.csv"), key=lambda train: (len(train.parts), train)):
        if (train.parent / "test.csv").is_file():
            return train.parent
    looked = "no such folder" if given and not given.is_dir() else "looked in it and every folder below it"
    raise UserError(f"{root}: {looked}; expected a folder holding both train.csv and test.csv: attach the "
                    f"competition's data on Kaggle (Add Input), elsewhere pass --input with that folder")


def default_output() -> Path:
    """Kaggle offers the files in /kaggle/working for submission; elsewhere a folder under the current one."""
    on_kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_WORKING.is_dir()
    return KAGGLE_WORKING if on_kaggle else Path("output")


def check_output(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # an unnamed file where the OS can: it leaves no trace
    except OSError as exc:
        doing = "write the outputs there" if folder.is_dir() else "create it"
        raise UserError(f"{folder}: cannot {doing} ({os_reason(exc)}); --output takes the folder the outputs "
                        f"go in") from None
