"""`digit-recognizer bundle`: the Kaggle kernel, one file that is both a script and a notebook.

Each core/ module becomes a markdown cell (its docstring) and a code cell (its code, its own imports
kept at its top and its package imports cut: those names are defined in another section), in the
reading order below, in jupytext's percent format; the notebook (.ipynb) is written from that file.
"""
import argparse
import ast
import difflib
import json
import sys
import textwrap
from dataclasses import dataclass, fields
from pathlib import Path

from .core.config import Config
from .core.errors import UserError
from .local_io import write_text

PACKAGE_DIR = Path(__file__).resolve().parent / "core"
ENTRY = "main"  # core/main.py defines main(), the kernel's entry point
KERNEL_FILE = Path("kernel") / "digit_recognizer_kernel.py"
NOTEBOOK_FILE = KERNEL_FILE.with_suffix(".ipynb")
# Installed on every Kaggle Python image (Pillow comes with torchvision; IPython runs every notebook).
KERNEL_LIBRARIES = ("torch", "torchvision", "numpy", "pandas", "tqdm", "PIL", "IPython")
# The kernel's parts in reading order, each a list of core/ modules: the default path first (the data,
# its preprocessing, the model, the training loop, the submission), then L-BFGS, cross-validation, the
# pictures and the helpers. A module may import from a later one only names it uses inside its
# functions, which run after every section has been defined.
READING_ORDER = (
    ("Configuration", ("errors", "config", "flags")),
    ("Reading the CSVs", ("data",)),
    ("Preprocessing", ("deskew", "features")),
    ("The model", ("model",)),
    ("Training", ("split", "train")),
    ("Prediction and submission.csv", ("submission", "pipeline", ENTRY)),
    ("L-BFGS", ("lbfgs",)),
    ("Cross-validation", ("cv",)),
    ("Pictures", ("pictures",)),
    ("Helpers", ("optimizer", "device", "paths", "checks", "report", "fileio")),
)
# After the flags section, which imports only the standard library: --help and a mistyped flag are
# answered there, before torch and pandas load. main() parses the flags again (it costs nothing).
GATE_AFTER = "flags"
GATE = '''
if __name__ == "__main__":  # answers --help and a bad flag before torch and pandas are imported
    parse_kernel_args(settings=SETTINGS)
'''
RUN = '''\
if __name__ == "__main__":
    # Only a failure raises SystemExit: a notebook cell reports even SystemExit(0) as an error.
    status = main(settings=SETTINGS)
    if status:
        raise SystemExit(status)
'''
INTRO = """\
# Kaggle Digit Recognizer: softmax regression in PyTorch

One linear layer from fixed features of each image to 10 digit scores, with cross-entropy: each digit
deskewed, scaled to one height and blurred, plus pooled gradient-direction planes (section 3),
standardised (4) and fitted to the optimum of its L2-penalised loss by L-BFGS (5, 7), or by epochs of
Adam with early stopping on a stratified hold-out (10); with `folds`, k-fold cross-validation estimates
the public score (8). `submission.csv`, `metrics.json`, `model.pt` and the pictures go to /kaggle/working.

Edit the settings below after *Copy & Edit*, then *Run All*; as a script, `python digit_recognizer_kernel.py
--input DATA --output OUT [--folds 5 ...]` (`--help` lists the flags). GENERATED from the digit_recognizer
package's `core/` by `digit-recognizer bundle`: the code tested locally is the code that runs here."""
SETTINGS_TEXT = """\
## Settings

The run's options (`digit-recognizer kernels push --folds 5 ...` writes them into the copy it pushes);
run as a script, a command-line flag overrides its setting."""
RUN_TEXT = """\
## Run

Train, print the per-epoch lines, the confusion matrix and the validation accuracy (with `folds`, the
CV estimate), show the pictures, and write the files."""
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
DIFF_LINES = 60
LINE_WIDTH = 110  # the kernel's longest line


@dataclass
class Section:
    docstring: str  # the module's docstring: the section's markdown cell
    code: str
    defines: dict[str, str]  # top-level name -> "def" if the module defines it, else what it imports
    imports: dict[str, list[str]]  # package module -> the names imported from it


@dataclass
class Kernel:
    text: str  # the script, in jupytext's percent format
    modules: list[str]  # in the order they appear

    @property
    def notebook(self) -> str:
        return notebook_text(self.text)


def build_kernel(package_dir: Path = PACKAGE_DIR, parts=READING_ORDER, gate_after: str | None = GATE_AFTER,
                 settings: dict | None = None) -> Kernel:
    """The kernel's text, built from the modules in `package_dir`, with `settings` (default: Config's defaults)."""
    order = [name for _, names in parts for name in names]
    sections: dict[str, Section] = {}
    imported: set[str] = set()  # library imports already in the kernel: a later section need not repeat them
    for name in order:
        sections[name] = read_section(package_dir, name, imported)
    check_modules(package_dir, order, sections)
    check_imports(package_dir, order, sections)
    check_names(sections)
    cells = [markdown(INTRO), markdown(SETTINGS_TEXT), code(settings_code(settings))]
    for number, (title, names) in enumerate(parts, start=1):
        for k, name in enumerate(names):
            section = sections[name]
            heading = [f"## {number}. {title}"] * (k == 0)
            docstring = section.docstring.split("\n", 1)
            # Markdown joins a paragraph's lines, so the first one may be wrapped to the kernel's line width.
            first = textwrap.wrap(f"**`core/{name}.py`**: {docstring[0]}", LINE_WIDTH - 2)
            about = [*first, *docstring[1:]] if section.docstring else []
            if heading or about:
                cells.append(markdown("\n\n".join(heading + ["\n".join(about)] * bool(about))))
            cells.append(code(section.code + (GATE if name == gate_after else "")))
    cells += [markdown(RUN_TEXT), code(RUN)]
    text = "\n\n".join(cell.strip("\n") for cell in cells) + "\n"
    compile(text, str(KERNEL_FILE), "exec", dont_inherit=True)  # a bundler bug fails here, not on Kaggle
    return Kernel(text, order)


def markdown(text: str) -> str:
    return "# %% [markdown]\n" + "\n".join(f"# {line}".rstrip() for line in text.strip("\n").splitlines())


def code(text: str) -> str:
    return "# %%\n" + text.strip("\n")


def settings_code(settings: dict | None = None) -> str:
    """The settings cell's code: every Config field, one a line, at `settings` or its default."""
    values = {f.name: f.default for f in fields(Config)} | (settings or {})
    lines = [f"    {name}={json.dumps(value) if isinstance(value, str) else repr(value)}," for name, value in values.items()]
    return "\n".join(["SETTINGS = dict(", *lines, ")"])


def notebook_text(script: str) -> str:
    """The .ipynb of a percent-format script, as the kaggle client's own conversion makes it, without
    outputs, with fixed cell ids so that the same script always gives the same bytes."""
    import jupytext  # installed with the kaggle client; only `bundle` and `kernels push` need it

    notebook = jupytext.reads(script, fmt="py:percent")
    notebook.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for number, cell in enumerate(notebook.cells, start=1):
        cell["id"] = f"cell-{number:02d}"
    return jupytext.writes(notebook, fmt="ipynb").rstrip("\n") + "\n"


def read_section(package_dir: Path, name: str, imported: set[str]) -> Section:
    path = package_dir / f"{name}.py"
    if not path.is_file():
        raise UserError(f"{path}: no such file; READING_ORDER in bundle.py lists {name}")
    source = path.read_text(encoding="utf-8")
    tree, lines = ast.parse(source, filename=str(path)), source.splitlines()  # tests import it: it parses
    cut: set[int] = set()  # 0-based numbers of the lines left out
    docstring = ast.get_docstring(tree) or ""
    if docstring:  # the module's docstring becomes the section's markdown cell
        cut.update(range(tree.body[0].lineno - 1, tree.body[0].end_lineno))
    imports: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            where = f"{path} line {node.lineno}: `{ast.unparse(node)}`"
            if isinstance(node, ast.ImportFrom) and node.level:
                imports[package_import(node, where, tree, lines)] = [alias.name for alias in node.names]
                cut.update(range(node.lineno - 1, node.end_lineno))
            else:
                check_library(node, where)
                if node in tree.body and own_lines(node, lines):
                    if ast.unparse(node) in imported:  # an earlier section made the same import
                        cut.update(range(node.lineno - 1, node.end_lineno))
                    imported.add(ast.unparse(node))
    starts = [min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) for node in tree.body]
    inside = {number for start, node in zip(starts, tree.body) for number in range(start - 1, node.end_lineno)}
    body = []
    for number, line in enumerate(lines):
        # Between top-level statements (never inside a string) one blank line is enough to read by.
        if number not in cut and (line.strip() or number in inside or (body and body[-1].strip())):
            body.append(line)
    return Section(docstring, "\n".join(body).strip("\n") + "\n", top_level_names(tree), imports)


def package_import(node: ast.ImportFrom, where: str, tree: ast.Module, lines: list[str]) -> str:
    """The module a package import names, when it is the one form the bundler inlines."""
    form = "the kernel inlines only `from .module import name, ...` at a module's top level, on lines of its own"
    if node.level != 1 or not node.module or "." in node.module:
        raise UserError(f"{where}: imports from outside core/ or a module object; {form}")
    if any(alias.name == "*" or alias.asname for alias in node.names):
        raise UserError(f"{where}: a star import or a renamed name would not exist as such in the kernel; {form}")
    if node not in tree.body or not own_lines(node, lines):
        raise UserError(f"{where}: {form}")
    return node.module


def check_imports(package_dir: Path, order: list[str], sections: dict[str, Section]) -> None:
    """Each package import names a module of the kernel; one from a later section only names used inside
    functions, which run after every section is defined (not at import time: a base class, a default,
    an annotation or a decorator)."""
    for position, name in enumerate(order):
        path = package_dir / f"{name}.py"
        for module, names in sections[name].imports.items():
            if module not in order:
                raise UserError(f"{path}: imports from {module}, which is not in bundle.py's READING_ORDER")
            early = definition_time_names(ast.parse(path.read_text(encoding="utf-8"))) & set(names)
            if order.index(module) > position and early:
                raise UserError(f"{path}: uses {sorted(early)[0]} from {module} as it is defined, and {module} "
                                f"comes after it in bundle.py's READING_ORDER; move {module} above {name} "
                                f"or use the name only inside functions")


def definition_time_names(tree: ast.Module) -> set[str]:
    """Names a module reads while it is being executed: everything but the bodies of its functions."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                early = [*node.decorator_list, *args.defaults, *[d for d in args.kw_defaults if d], node.returns,
                         *[a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                  args.vararg, args.kwarg] if a is not None]]
                found.update(n.id for part in early if part is not None for n in ast.walk(part)
                             if isinstance(n, ast.Name))
            elif isinstance(node, ast.ClassDef):
                found.update(n.id for part in [*node.decorator_list, *node.bases, *node.keywords]
                             for n in ast.walk(part) if isinstance(n, ast.Name))
                visit(node.body)
            else:
                found.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))

    visit(tree.body)
    return found


def own_lines(node: ast.stmt, lines: list[str]) -> bool:
    """Whether the statement can be cut out whole: nothing else shares its lines but a comment."""
    after = lines[node.end_lineno - 1][node.end_col_offset:].strip()
    return not lines[node.lineno - 1][:node.col_offset].strip() and (not after or after.startswith("#"))


def check_library(node: ast.Import | ast.ImportFrom, where: str) -> None:
    roots = [alias.name.split(".")[0] for alias in node.names] if isinstance(node, ast.Import) else \
        [node.module.split(".")[0]]
    for root in roots:
        if root not in sys.stdlib_module_names and root not in KERNEL_LIBRARIES:
            raise UserError(f"{where}: {root} is not on Kaggle's images; the kernel may import only the standard "
                            f"library and {', '.join(KERNEL_LIBRARIES)}")


def top_level_names(tree: ast.Module) -> dict[str, str]:
    """Names a module binds at top level: "def" for its own definitions, the full name for an import."""
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name.split(".")[0], a.name if a.asname else a.name.split(".")[0])
                         for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.update((a.asname or a.name, f"{node.module}.{a.name}") for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = "def"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update((n.id, "def") for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def check_modules(package_dir: Path, order: list[str], sections: dict[str, Section]) -> None:
    """The reading order holds exactly core/'s modules, each of them used by the kernel."""
    if ENTRY not in sections or sections[ENTRY].defines.get(ENTRY) != "def":
        raise UserError(f"{package_dir / (ENTRY + '.py')}: defines no function {ENTRY}() for the kernel to call")
    missing = sorted({path.stem for path in package_dir.glob("*.py")} - set(order) - {"__init__"})
    if missing:
        raise UserError(f"{package_dir / (missing[0] + '.py')}: not in bundle.py's READING_ORDER; core/ holds only "
                        f"what the kernel runs, so add it there or move it out of core/")
    imported = {target for section in sections.values() for target in section.imports}
    unused = [name for name in order if name != ENTRY and name not in imported]
    if unused:
        raise UserError(f"{package_dir / (unused[0] + '.py')}: no core module imports it; move it out of core/")


def check_names(sections: dict[str, Section]) -> None:
    """One namespace holds every section: no name may mean two things in it."""
    owner: dict[str, tuple[str, str]] = {}  # name -> (module, meaning)
    for name, section in sections.items():
        for defined, meaning in section.defines.items():
            first, first_meaning = owner.setdefault(defined, (name, meaning))
            if first != name and (meaning == "def" or meaning != first_meaning):
                raise UserError(f"{defined} means one thing in core/{first}.py and another in core/{name}.py; the "
                                f"kernel puts both in one namespace, so rename one")


def staleness(root: Path, package_dir: Path = PACKAGE_DIR) -> tuple[str, str] | None:
    """None when root's kernel script and notebook are what `bundle` would write now; else one line
    saying which is not, and the diff."""
    kernel = build_kernel(package_dir)
    for path, fresh in ((root / KERNEL_FILE, kernel.text), (root / NOTEBOOK_FILE, kernel.notebook)):
        try:
            committed = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return f"{path}: no such file; run `digit-recognizer bundle` to write it", ""
        if committed != fresh:
            diff = list(difflib.unified_diff(committed.splitlines(), fresh.splitlines(), f"{path} (committed)",
                                             f"{path} (what bundle writes now)", lineterm=""))
            changed = sum(1 for line in diff[2:] if line[:1] in "+-")
            more = [f"... and {len(diff) - DIFF_LINES} more lines of diff"] * (len(diff) > DIFF_LINES)
            return (f"{path} is stale ({changed} lines differ from a fresh build); run `digit-recognizer bundle` "
                    f"to regenerate it", "\n".join(diff[:DIFF_LINES] + more))
    return None


def kernel_staleness(root: Path, package_dir: Path = PACKAGE_DIR) -> str | None:
    """None when root's kernel is current; else one line (`push` shows it; `bundle --check` adds the diff)."""
    stale = staleness(root, package_dir)
    return stale[0] if stale else None


def section_lines(text: str) -> dict[str, int]:
    """The 1-based line where each part's heading cell starts, by part title."""
    lines = text.splitlines()
    return {line.split(". ", 1)[1]: number - 1 for number, line in enumerate(lines, start=1)
            if line.startswith("# ## ") and ". " in line and lines[number - 2] == "# %% [markdown]"}


def cmd_bundle(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise UserError(f"{args.root}: no such folder; --root takes the repository folder that holds kernel/")
    stale = staleness(args.root)
    if args.check:
        done = f"{args.root / KERNEL_FILE} and {NOTEBOOK_FILE.name}: up to date"
        print("\n".join(part for part in stale if part) if stale else done, file=sys.stderr if stale else sys.stdout)
        return 1 if stale else 0
    kernel = build_kernel()
    for path, text in ((args.root / KERNEL_FILE, kernel.text), (args.root / NOTEBOOK_FILE, kernel.notebook)):
        if stale and (not path.is_file() or path.read_text(encoding="utf-8") != text):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, text)
            print(f"wrote {path}")
    starts = ", ".join(f"{title} {line}" for title, line in section_lines(kernel.text).items())
    print(f"{'' if stale else 'unchanged: '}{args.root / KERNEL_FILE}: {kernel.text.count(chr(10))} lines, longest "
          f"{max(map(len, kernel.text.splitlines()))} characters; parts start at lines: {starts}")
    return 0


def bundle_flags(bundle: argparse.ArgumentParser) -> None:
    bundle.add_argument("--root", type=Path, default=Path("."),
                        help="the repository folder whose kernel/ is written or checked (default: the current folder)")
    bundle.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and show the diff if the kernel is not what would be written")
    bundle.set_defaults(handler=cmd_bundle)
