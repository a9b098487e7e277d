"""The Kaggle kernel is generated from the package: staleness checks, what the bundler refuses, metadata."""
import ast
import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from digit_recognizer.bundle import KERNEL_FILE, KERNEL_LIBRARIES, PACKAGE_DIR, build_kernel, kernel_staleness
from digit_recognizer.core.errors import UserError


def package_copy(tmp_path: Path) -> Path:
    """The package's modules in a temporary folder, to change without touching the real source."""
    copy = tmp_path / "digit_recognizer"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "sample"))
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_committed_kernel_is_what_bundle_writes():
    done = run_cli("bundle", "--check", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_a_changed_module_makes_the_check_name_it(tmp_path):
    package = package_copy(tmp_path)
    edit(package / "model.py", "self.use_deskew = use_deskew", "self.use_deskew = bool(use_deskew)")
    problem = kernel_staleness(ROOT, package_dir=package)
    assert problem is not None
    assert "model.py" in problem and "digit-recognizer bundle" in problem
    assert "data.py" not in problem and "train.py" not in problem
    assert "\n" not in problem


def test_a_new_import_in_a_module_is_named(tmp_path):
    package = package_copy(tmp_path)
    edit(package / "split.py", "import numpy as np\n", "import heapq\n\nimport numpy as np\n")
    problem = kernel_staleness(ROOT, package_dir=package)
    assert problem is not None and "split.py" in problem


def test_check_fails_on_a_stale_kernel_until_it_is_regenerated(tmp_path):
    (tmp_path / "kernel").mkdir()
    committed = (ROOT / KERNEL_FILE).read_text(encoding="utf-8")
    stale = committed.replace("def stratified_split(", "def stratified_split_old(", 1)
    assert stale != committed
    (tmp_path / KERNEL_FILE).write_text(stale, encoding="utf-8")

    done = run_cli("bundle", "--check", "--root", str(tmp_path))
    assert done.returncode == 1
    assert "split.py" in done.stderr and "digit-recognizer bundle" in done.stderr

    assert run_cli("bundle", "--root", str(tmp_path)).returncode == 0
    assert (tmp_path / KERNEL_FILE).read_text(encoding="utf-8") == committed
    assert run_cli("bundle", "--check", "--root", str(tmp_path)).returncode == 0


def test_check_reports_a_missing_kernel(tmp_path):
    done = run_cli("bundle", "--check", "--root", str(tmp_path))
    assert done.returncode == 1 and "no such file" in done.stderr


def test_kernel_reads_from_data_to_model_to_training_to_main():
    order = build_kernel().modules
    assert order[-1] == "main"
    assert order.index("data") < order.index("model") < order.index("train") < order.index("pipeline")


def test_kernel_imports_only_what_kaggle_images_have():
    tree = ast.parse((ROOT / KERNEL_FILE).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, ast.unparse(node)
            roots = [node.module.split(".")[0]]
        elif isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        else:
            continue
        for root in roots:
            assert root in sys.stdlib_module_names or root in KERNEL_LIBRARIES, ast.unparse(node)


# Kaggle images lag behind PyTorch releases: the kernel must run on torch 2.1. Each entry was added
# to torch after 2.1 (the version in which it appeared is noted); extend the list when in doubt.
NEWER_THAN_TORCH_2_1 = {
    "torch.amp.GradScaler": "2.3", "torch.get_default_device": "2.3", "torch.nn.attention": "2.2",
    "torch.utils.data.StackDataset": "2.2", "torch.nn.RMSNorm": "2.4", "torch.nn.functional.rms_norm": "2.4",
    "torch.serialization.add_safe_globals": "2.4", "torch.serialization.safe_globals": "2.5",
    "torch.accelerator": "2.6",
}


def dotted_names(tree: ast.Module) -> set[str]:
    """Every `a.b.c` the code names, with import aliases (F, nn, np) expanded."""
    aliases, names = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                names.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
    for node in ast.walk(tree):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if parts and isinstance(node, ast.Name):
            names.add(".".join([aliases.get(node.id, node.id), *reversed(parts)]))
    return names


def test_kernel_uses_no_torch_api_newer_than_2_1():
    names = dotted_names(ast.parse((ROOT / KERNEL_FILE).read_text(encoding="utf-8")))
    assert "torch.nn.functional.cross_entropy" in names  # the alias expansion works
    used = {api: version for api, version in NEWER_THAN_TORCH_2_1.items()
            if any(name == api or name.startswith(api + ".") for name in names)}
    assert not used, f"torch APIs newer than 2.1 in the kernel: {used}"


def test_the_torch_version_check_sees_through_aliases():
    code = "from torch import amp\nimport torch.nn.functional as G\nG.rms_norm(x, [4])\namp.GradScaler()\n"
    names = dotted_names(ast.parse(code))
    assert {"torch.nn.functional.rms_norm", "torch.amp.GradScaler"} <= names


# --- the bundler on small made-up packages ---------------------------------------------------

def make_package(folder: Path, modules: dict[str, str]) -> Path:
    folder.mkdir()
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    return folder


def test_bundles_lazy_imports_and_puts_future_imports_first(tmp_path):
    package = make_package(tmp_path / "pkg", {
        "main": '"""Entry."""\nfrom __future__ import annotations\n\nimport math\n\nfrom .shapes import area\n\n\n'
                       'def main(argv=None) -> int:\n    return int(area(2.0)) + later()\n\n\n'
                       'def later() -> int:\n    from .extra import bonus\n\n    return bonus()\n\n\n'
                       'def only_import():\n    from .extra import bonus\n',
        "shapes": '"""Shapes."""\nimport math\n\nfrom .extra import bonus\n\n\ndef area(r: float) -> float:\n'
                  '    return math.pi * r * r + 0 * bonus()\n',
        "extra": "def bonus() -> int:\n    return 100\n",
    })
    kernel = build_kernel(package)
    tree = ast.parse(kernel.text)
    assert ast.unparse(tree.body[0]) == "from __future__ import annotations"
    assert kernel.modules == ["extra", "shapes", "main"]
    assert "from ." not in kernel.text and kernel.text.count("import math") == 1
    assert "# Shapes." in kernel.text and "# Entry." in kernel.text
    namespace = {"__name__": "bundled"}
    exec(compile(kernel.text, "kernel.py", "exec"), namespace)
    assert namespace["main"]() == 12 + 100
    assert namespace["only_import"]() is None  # its body became `pass`


@pytest.mark.parametrize("modules, expected", [
    ({"main": "from .a import helper\n\n\ndef main():\n    return helper()\n\n\ndef helper():\n    pass\n",
      "a": "def helper():\n    return 1\n"},
     "helper is defined at top level in both"),
    ({"main": "from . import a\n\n\ndef main():\n    return a\n", "a": "X = 1\n"},
     "imports a module object"),
    ({"main": "from .a import X as Y\n\n\ndef main():\n    return Y\n", "a": "X = 1\n"},
     "renames X"),
    ({"main": "from .a import *\n\n\ndef main():\n    return X\n", "a": "X = 1\n"},
     "star import"),
    ({"main": "import digit_recognizer.a\n\n\ndef main():\n    return 1\n"},
     "absolute import of the package"),
    ({"main": "def main():\n    from digit_recognizer.a import X\n    return X\n"},
     "absolute import of the package"),
    ({"main": "from ..a import X\n\n\ndef main():\n    return X\n"},
     "parent package"),
    ({"main": "from .a.b import X\n\n\ndef main():\n    return X\n"},
     "subpackage"),
    ({"main": "from .missing import X\n\n\ndef main():\n    return X\n"},
     "no missing.py in the package"),
    ({"main": "from .a import Y\n\n\ndef main():\n    return Y\n", "a": "X = 1\n"},
     "a.py defines no top-level Y"),
    ({"main": "from .a import X; Y = 2\n\n\ndef main():\n    return X + Y\n", "a": "X = 1\n"},
     "shares its line"),
    ({"main": "import numpy as np\n\n\ndef main():\n    return np\n",
      "unused": "import sklearn\n"},
     None),  # modules main does not reach may import anything
    ({"main": "from .a import f\n\n\ndef main():\n    return f()\n",
      "a": "def f():\n    import sklearn.linear_model\n    return sklearn\n"},
     "a.py line 2: `import sklearn.linear_model`: sklearn is not on Kaggle's images"),
    ({"main": "import requests\n\n\ndef main():\n    return 1\n"},
     "main.py line 1: `import requests`: requests is not on Kaggle's images"),
    ({"main": "import numpy as np\nfrom .a import f\n\n\ndef main():\n    return f()\n",
      "a": "np = 1\n\n\ndef f():\n    return np\n"},
     "main.py imports np (`import numpy as np`), but a.py defines np"),
    ({"main": "from numpy import linalg\nfrom .a import f\n\n\ndef main():\n    return f()\n",
      "a": "from torch import linalg\n\n\ndef f():\n    return linalg\n"},
     "linalg is imported as numpy.linalg in main.py and as torch.linalg in a.py"),
    ({"main": "from .a import f\n\n\ndef main():\n    return f()\n",
      "a": "from .main import main\n\n\ndef f():\n    return main\n"},
     "import cycle"),
    ({"main": "def run():\n    return 1\n"},
     "defines no function main()"),
])
def test_refuses_what_it_cannot_inline_safely(tmp_path, modules, expected):
    package = make_package(tmp_path / "pkg", modules)
    if expected is None:
        build_kernel(package)
        return
    with pytest.raises(UserError) as caught:
        build_kernel(package)
    assert expected in str(caught.value)


def test_bundle_errors_are_one_line_with_exit_2(tmp_path):
    """The real CLI reports bundle mistakes like any other user mistake: one line, exit 2."""
    done = run_cli("bundle", "--root", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert done.stderr.startswith("digit-recognizer: error: ") and done.stderr.count("\n") == 1


# --- kernel-metadata.json ---------------------------------------------------------------------

def push_problems(folder: Path) -> list[str]:
    """What kaggle 2.2.4's KaggleApi.kernels_push raises ValueError for, checked the same way (it stops at the first)."""
    from slugify import slugify  # python-slugify: the kaggle client's own dependency

    meta_file = folder / "kernel-metadata.json"
    if not meta_file.is_file():
        return ["Metadata file not found"]
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    problems = []
    title = meta.get("title")
    if title and len(title) < 5:
        problems.append("Title must be at least five characters")
    code_path = meta.get("code_file", "")
    if not code_path:
        problems.append("A source file must be specified in the metadata")
    elif not (folder / code_path).is_file():
        problems.append(f"Source file not found: {code_path}")
    slug = meta.get("id")
    if not slug and not meta.get("id_no"):
        problems.append("ID or slug must be specified in the metadata")
    if slug:
        parts = slug.split("/")
        if "/" not in slug or len(parts) > 3 or not parts[0] or not parts[1]:
            problems.append("Kernel must be specified in the form of '{username}/{kernel-slug}'")
        elif len(parts[1]) < 5:
            problems.append("Kernel slug must be at least five characters")
        elif len(parts) == 3:
            problems.append("Kernel metadata 'id' (slug) cannot contain a version")
        # The client only warns here, but Kaggle then answers "Notebook not found": treat it as an error.
        elif title and parts[1].lower() != slugify(title):
            problems.append(f"title {title!r} does not slugify to the id's slug {parts[1]!r}")
    if meta.get("language", "") not in ("python", "r", "rmarkdown"):
        problems.append("A valid language must be specified in the metadata")
    if meta.get("kernel_type", "") not in ("script", "notebook"):
        problems.append("A valid kernel type must be specified in the metadata")
    for key in ("dataset_sources", "kernel_sources", "model_sources"):
        if meta.get(key):  # ours attach none; the client would validate each one's form
            problems.append(f"{key}: expected none, got {meta[key]}")
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in ("original", "latest"):
        problems.append("If specified, the docker_image_pinning_type must be one of ['original', 'latest']")
    for key in ("is_private", "enable_gpu", "enable_tpu", "enable_internet"):
        value = meta.get(key, False)
        if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
            problems.append(f"Invalid boolean value: {value}")
    return problems


def test_kernel_metadata_passes_the_push_checks_and_says_what_we_need():
    assert push_problems(ROOT) == []
    meta = json.loads((ROOT / "kernel-metadata.json").read_text(encoding="utf-8"))
    assert meta["id"] == "YOUR_KAGGLE_USERNAME/digit-recognizer-logistic-regression"
    assert meta["code_file"] == KERNEL_FILE.as_posix()
    assert (meta["language"], meta["kernel_type"]) == ("python", "script")
    # Stated explicitly: the client's default for a missing enable_internet is True.
    assert meta["enable_internet"] is False and meta["is_private"] is True
    assert meta["enable_gpu"] is True and meta["machine_shape"] == "NvidiaTeslaT4"
    assert meta["competition_sources"] == ["digit-recognizer"]
    assert meta["dataset_sources"] == [] and meta["kernel_sources"] == []
    assert "docker_image" not in meta


@pytest.mark.parametrize("change, expected", [
    ({"title": "Digi"}, "Title must be at least five characters"),
    ({"title": "Another title entirely"}, "does not slugify"),
    ({"id": "someone/abc"}, "at least five characters"),
    ({"id": "digit-recognizer-logistic-regression"}, "form of"),
    ({"code_file": "kernel/missing.py"}, "Source file not found"),
    ({"language": "julia"}, "valid language"),
    ({"kernel_type": "utility"}, "valid kernel type"),
    ({"enable_internet": "no"}, "Invalid boolean value"),
])
def test_push_checks_catch_broken_metadata(tmp_path, change, expected):
    meta = json.loads((ROOT / "kernel-metadata.json").read_text(encoding="utf-8"))
    (tmp_path / "kernel-metadata.json").write_text(json.dumps({**meta, **change}), encoding="utf-8")
    (tmp_path / "kernel").mkdir()
    shutil.copy(ROOT / KERNEL_FILE, tmp_path / KERNEL_FILE)
    assert any(expected in problem for problem in push_problems(tmp_path))
