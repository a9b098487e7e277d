"""`digit-recognizer bundle`: the Kaggle kernel, one readable file generated from core/.

Each core/ module becomes a section, in the reading order below, its own imports kept at its top and
its package imports (`from .module import names`) cut: those names are defined in a section above.
"""
import argparse
import ast
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path

from .core.errors import UserError
from .core.fileio import write_text

PACKAGE_DIR = Path(__file__).resolve().parent / "core"
ENTRY = "main"  # core/main.py defines main(), the kernel's entry point
KERNEL_FILE = Path("kernel") / "digit_recognizer_kernel.py"
# Installed on every Kaggle Python image (Pillow comes with torchvision).
KERNEL_LIBRARIES = ("torch", "torchvision", "numpy", "pandas", "tqdm", "PIL")
# The kernel's parts in reading order, each a list of core/ modules. A module may import only from
# modules above it, so a reader meets every name before it is used at import time.
READING_ORDER = (
    ("Configuration", ("errors", "config", "flags")),
    ("Data", ("csvtable", "data")),
    ("Model", ("deskew", "features", "model")),
    ("Training", ("split", "optimizer", "lbfgs", "train", "metrics", "cv")),
    ("Submission", ("fileio", "submission")),
    ("Pictures", ("pictures",)),
    ("Entry point", ("pipeline", "report", "interrupts", ENTRY)),
)
# After the flags section, which imports only the standard library: --help and a mistyped flag are
# answered there, before torch and pandas load. main() parses the flags again (it costs nothing).
GATE_AFTER = "flags"
GATE = '''\
if __name__ == "__main__":  # answers --help and a bad flag before torch and pandas are imported
    parse_kernel_args()
'''
RUN = '''\
if __name__ == "__main__":
    # Only a failure raises SystemExit: a notebook cell reports even SystemExit(0) as an error.
    status = main()
    if status:
        raise SystemExit(status)
'''
OUTLINE = """\
# Kaggle Digit Recognizer: multinomial logistic regression (softmax regression) in PyTorch.
#
# The method, top to bottom:
#   1. features: each digit deskewed, scaled to one height and blurred (784 pixels), plus 392 pooled
#      gradient-direction planes (--features picks a lower rung of the ladder);
#   2. centre and scale: subtract each feature's training mean, divide each block by one shared std;
#   3. softmax regression: one linear layer from the features to 10 digit scores, cross-entropy loss,
#      fitted to the optimum of its L2-penalised loss by L-BFGS (or Adam/SGD epochs with early stopping);
#   4. validate on a stratified hold-out (10% of train.csv by default), or k-fold CV with --folds;
#   5. write submission.csv, and pictures of the weights, the worst errors, the confusion matrix and the features.
#
# GENERATED from the digit_recognizer package's core/ by `digit-recognizer bundle`, so the code tested
# locally is the code that runs on Kaggle: do not edit it; change core/ and run that command again.
#
# On Kaggle it reads the competition data under /kaggle/input and writes /kaggle/working/submission.csv;
# anywhere else:  python digit_recognizer_kernel.py --input DATA_FOLDER --output OUT_FOLDER [--epochs N ...]
#
# Parts: {parts}"""
RULE_WIDTH = 100
DIFF_LINES = 60


@dataclass
class Section:
    text: str
    defines: dict[str, str]  # top-level name -> "def" if the module defines it, else what it imports
    imports: list[str]  # the package modules it imports from


@dataclass
class Kernel:
    text: str
    modules: list[str]  # in the order they appear


def build_kernel(package_dir: Path = PACKAGE_DIR, parts=READING_ORDER, gate_after: str | None = GATE_AFTER) -> Kernel:
    """The kernel's text, built from the modules in `package_dir`."""
    order = [name for _, names in parts for name in names]
    sections: dict[str, Section] = {}
    imported: set[str] = set()  # library imports already in the kernel: a later section need not repeat them
    for name in order:
        sections[name] = read_section(package_dir, name, set(sections), imported)
    check_modules(package_dir, order, sections)
    check_names(sections)
    chunks = [OUTLINE.format(parts="  ".join(f"{n}. {title}" for n, (title, _) in enumerate(parts, start=1)))]
    for number, (title, names) in enumerate(parts, start=1):
        chunks.append(f"# {'=' * 8} {number}. {title} ".ljust(RULE_WIDTH, "="))
        for name in names:
            chunks.append(sections[name].text)
            if name == gate_after:
                chunks.append(GATE)
    chunks.append(RUN)
    text = "\n\n".join(chunk.strip("\n") for chunk in chunks) + "\n"
    compile(text, str(KERNEL_FILE), "exec", dont_inherit=True)  # a bundler bug fails here, not on Kaggle
    return Kernel(text, order)


def read_section(package_dir: Path, name: str, earlier: set[str], imported: set[str]) -> Section:
    path = package_dir / f"{name}.py"
    if not path.is_file():
        raise UserError(f"{path}: no such file; READING_ORDER in bundle.py lists {name}")
    source = path.read_text(encoding="utf-8")
    tree, lines = ast.parse(source, filename=str(path)), source.splitlines()  # tests import it: it parses
    cut: set[int] = set()  # 0-based numbers of the lines left out
    heading = [f"# ---- core/{name}.py ".ljust(RULE_WIDTH, "-")]
    docstring = ast.get_docstring(tree)
    if docstring:  # the module's docstring becomes the section's opening comment
        heading += [f"# {line}".rstrip() for line in docstring.splitlines()]
        cut.update(range(tree.body[0].lineno - 1, tree.body[0].end_lineno))
    imports: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            where = f"{path} line {node.lineno}: `{ast.unparse(node)}`"
            if isinstance(node, ast.ImportFrom) and node.level:
                imports.append(package_import(node, where, tree, lines, earlier))
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
    return Section("\n".join(heading + [""] + body).rstrip() + "\n", top_level_names(tree), imports)


def package_import(node: ast.ImportFrom, where: str, tree: ast.Module, lines: list[str], earlier: set[str]) -> str:
    """The module a package import names, when it is the one form the bundler inlines."""
    form = "the kernel inlines only `from .module import name, ...` at a module's top level, on lines of its own"
    if node.level != 1 or not node.module or "." in node.module:
        raise UserError(f"{where}: imports from outside core/ or a module object; {form}")
    if any(alias.name == "*" or alias.asname for alias in node.names):
        raise UserError(f"{where}: a star import or a renamed name would not exist as such in the kernel; {form}")
    if node not in tree.body or not own_lines(node, lines):
        raise UserError(f"{where}: {form}")
    if node.module not in earlier:
        raise UserError(f"{where}: {node.module} does not come before this module in bundle.py's READING_ORDER; "
                        f"a module may import only from those above it")
    return node.module


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
    """None when root's kernel is what `bundle` would write now; else one line saying so, and the diff."""
    path = root / KERNEL_FILE
    fresh = build_kernel(package_dir).text
    try:
        committed = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{path}: no such file; run `digit-recognizer bundle` to write it", ""
    if committed == fresh:
        return None
    diff = list(difflib.unified_diff(committed.splitlines(), fresh.splitlines(), f"{path} (committed)",
                                     f"{path} (what bundle writes now)", lineterm=""))
    changed = sum(1 for line in diff[2:] if line[:1] in "+-")
    shown = diff[:DIFF_LINES] + [f"... and {len(diff) - DIFF_LINES} more lines of diff"] * (len(diff) > DIFF_LINES)
    return (f"{path} is stale ({changed} lines differ from a fresh build); run `digit-recognizer bundle` to "
            f"regenerate it", "\n".join(shown))


def kernel_staleness(root: Path, package_dir: Path = PACKAGE_DIR) -> str | None:
    """None when root's kernel is current; else one line (`push` shows it; `bundle --check` adds the diff)."""
    stale = staleness(root, package_dir)
    return stale[0] if stale else None


def cmd_bundle(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise UserError(f"{args.root}: no such folder; --root takes the repository folder that holds kernel/")
    stale, path = staleness(args.root), args.root / KERNEL_FILE
    if args.check:
        print("\n".join(part for part in stale if part) if stale else f"{path}: up to date",
              file=sys.stderr if stale else sys.stdout)
        return 1 if stale else 0
    kernel = build_kernel()
    if stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, kernel.text)
    lines, modules = kernel.text.count("\n"), ", ".join(kernel.modules)
    print(f"{'wrote' if stale else 'unchanged:'} {path} ({lines} lines; modules {modules})")
    return 0


def bundle_flags(bundle: argparse.ArgumentParser) -> None:
    bundle.add_argument("--root", type=Path, default=Path("."),
                        help="the repository folder whose kernel/ is written or checked (default: the current folder)")
    bundle.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and show the diff if the kernel is not what would be written")
    bundle.set_defaults(handler=cmd_bundle)
