"""`digit-recognizer bundle`: the Kaggle kernel, one readable file generated from this package.

The modules reachable from main (through `from .module import name` lines, including
ones inside functions) are copied in dependency order, their package imports removed and
their other imports hoisted to the top, so the kernel runs exactly the code the tests run.
Everything works on the modules' ASTs; what cannot be inlined safely is refused.
"""
import argparse
import ast
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .core.errors import UserError
from .core.fileio import write_text

PACKAGE = "digit_recognizer"
PACKAGE_DIR = Path(__file__).resolve().parent / "core"
ENTRY_MODULE = "main"
KERNEL_FILE = Path("kernel") / "digit_recognizer_kernel.py"
# Installed on every Kaggle Python image (Pillow comes with torchvision).
KERNEL_LIBRARIES = ("torch", "torchvision", "numpy", "pandas", "tqdm", "PIL")
SECTION_MARK = "# ======== "
SECTION_WIDTH = 100
SECTION_LINE = re.compile(r"^# ======== (?:from digit_recognizer/core/(\w+)\.py|(run)) =+$")
RUN_BLOCK = '''\
if __name__ == "__main__":
    # Only a failure raises SystemExit: a notebook cell reports even SystemExit(0) as an error.
    status = main()
    if status:
        raise SystemExit(status)
'''


@dataclass
class InlinedModule:
    """One package module as the bundler sees it: its source, what it imports, what it defines."""
    name: str
    lines: list[str]
    tree: ast.Module
    docstring: str = ""
    imports_now: list[str] = field(default_factory=list)    # package modules needed at import time
    imports_later: list[str] = field(default_factory=list)  # package modules imported inside functions
    wanted: list[tuple[str, str, int]] = field(default_factory=list)  # (module, name, line) imported from the package
    hoisted: list[ast.stmt] = field(default_factory=list)   # top-level imports of other libraries
    dropped: list[tuple[ast.stmt, list[ast.stmt]]] = field(default_factory=list)  # statements to cut, and their block

    @property
    def file(self) -> str:
        return f"{self.name}.py"


@dataclass
class Kernel:
    text: str
    modules: list[str]                      # in the order they appear
    imports_of: dict[str, set[tuple]]       # module -> the import bindings it contributed to the top


def build_kernel(package_dir: Path = PACKAGE_DIR) -> Kernel:
    """The kernel's text, built from the modules in `package_dir` reachable from main."""
    modules = collect_modules(package_dir)
    order = dependency_order(modules)
    check_names(modules, order)
    imports_of = {name: {import_item(node, alias) for node in modules[name].hoisted for alias in node.names}
                  for name in order}
    parts = [kernel_header(order), import_block(modules[name].hoisted for name in order)]
    parts += [module_section(modules[name]) for name in order]
    parts.append(section_heading("run") + "\n\n" + RUN_BLOCK)
    text = "\n\n".join(part.rstrip("\n") + "\n" for part in parts)
    try:
        compile(text, str(KERNEL_FILE), "exec", dont_inherit=True)
    except SyntaxError as exc:  # a bundler bug, not the user's: say where, so it can be fixed
        raise UserError(f"the bundled kernel would not compile: line {exc.lineno}: {exc.msg}") from None
    return Kernel(text, order, imports_of)


def collect_modules(package_dir: Path) -> dict[str, InlinedModule]:
    modules: dict[str, InlinedModule] = {}
    pending = [(ENTRY_MODULE, None)]
    while pending:
        name, importer = pending.pop()
        if name in modules:
            continue
        modules[name] = read_module(package_dir, name, importer)
        pending += [(dep, modules[name].file) for dep in modules[name].imports_now + modules[name].imports_later]
    if not any(isinstance(node, ast.FunctionDef) and node.name == ENTRY_MODULE for node in modules[ENTRY_MODULE].tree.body):
        raise UserError(f"{package_dir / (ENTRY_MODULE + '.py')}: defines no function {ENTRY_MODULE}() for the kernel to call")
    return modules


def read_module(package_dir: Path, name: str, importer: str | None) -> InlinedModule:
    path = package_dir / f"{name}.py"
    if not path.is_file():
        where = f"{importer} imports from .{name}, but" if importer else "the kernel starts from"
        raise UserError(f"{path}: no such file ({where} there is no {name}.py in the package)")
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise UserError(f"{path}: line {exc.lineno}: not valid Python ({exc.msg})") from None
    module = InlinedModule(name, source.splitlines(), tree)
    for number, line in enumerate(module.lines, start=1):
        if SECTION_LINE.match(line):
            raise UserError(f"{path}: line {number}: looks like the kernel's section marker; reword it")
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        module.docstring = inspect.cleandoc(first.value.value)
        cut(module, first, tree.body)
    scan_block(module, tree.body, in_function=False, top=True)
    return module


def scan_block(module: InlinedModule, block: list[ast.stmt], in_function: bool, top: bool) -> None:
    """Find the imports in a block and the blocks nested in it."""
    for node in block:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            scan_import(module, node, block, in_function, top)
        inner_function = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for value in ast.iter_fields(node):
            items = value[1] if isinstance(value[1], list) else []
            for item in items:
                if isinstance(item, (ast.ExceptHandler, ast.match_case)):
                    scan_block(module, item.body, inner_function, top=False)
            if items and isinstance(items[0], ast.stmt):
                scan_block(module, items, inner_function, top=False)


def scan_import(module: InlinedModule, node: ast.Import | ast.ImportFrom, block: list[ast.stmt],
                in_function: bool, top: bool) -> None:
    where = f"{module.file} line {node.lineno}"
    statement = ast.unparse(node)
    roots = [alias.name.split(".")[0] for alias in node.names] if isinstance(node, ast.Import) else \
        [(node.module or "").split(".")[0]]
    if (isinstance(node, ast.ImportFrom) and node.level) or PACKAGE in roots:
        target = package_import_target(node, where, statement)
        (module.imports_later if in_function else module.imports_now).append(target)
        module.wanted += [(target, alias.name, node.lineno) for alias in node.names]
        cut(module, node, block)
        return
    for root in roots:
        if root != "__future__" and root not in sys.stdlib_module_names and root not in KERNEL_LIBRARIES:
            raise UserError(f"{where}: `{statement}`: {root} is not on Kaggle's images; the kernel may import only "
                            f"the standard library and {', '.join(KERNEL_LIBRARIES)}")
    if top:
        module.hoisted.append(node)
        cut(module, node, block)


def package_import_target(node: ast.Import | ast.ImportFrom, where: str, statement: str) -> str:
    """The module a package import names, when it has the one form the bundler can inline."""
    form = "only `from .module import name1, name2` can be inlined"
    if isinstance(node, ast.Import) or node.level != 1:
        problem = "absolute import of the package" if isinstance(node, ast.Import) or not node.level else \
            "import from a parent package"
        raise UserError(f"{where}: `{statement}`: {problem}; {form}")
    if not node.module:
        raise UserError(f"{where}: `{statement}`: imports a module object, which the kernel does not have; {form}")
    if "." in node.module:
        raise UserError(f"{where}: `{statement}`: imports from a subpackage; {form}")
    for alias in node.names:
        if alias.name == "*":
            raise UserError(f"{where}: `{statement}`: a star import hides which names it needs; {form}")
        if alias.asname:
            raise UserError(f"{where}: `{statement}`: renames {alias.name}, which would not exist under that name "
                            f"in the kernel; {form}")
    return node.module


def cut(module: InlinedModule, node: ast.stmt, block: list[ast.stmt]) -> None:
    """Mark a statement for removal; it must have its lines to itself."""
    before = module.lines[node.lineno - 1][:node.col_offset]
    after = module.lines[node.end_lineno - 1][node.end_col_offset:].strip()
    if before.strip() or (after and not after.startswith("#")):
        raise UserError(f"{module.file} line {node.lineno}: `{ast.unparse(node)[:60]}` shares its line with other "
                        f"code, so it cannot be cut out; put it on a line of its own")
    module.dropped.append((node, block))


def dependency_order(modules: dict[str, InlinedModule]) -> list[str]:
    """Modules with their dependencies first, visiting imports in source order (data -> model -> ... -> main)."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise UserError(f"import cycle between package modules at import time ({cycle}); the kernel needs an order")
        visiting.append(name)
        for dep in modules[name].imports_now:
            visit(dep)
        visiting.pop()
        order.append(name)
        # Imports inside functions run later, so they need not come first; they follow their importer.
        for dep in modules[name].imports_later:
            if dep not in visiting:
                visit(dep)

    visit(ENTRY_MODULE)
    return order


def check_names(modules: dict[str, InlinedModule], order: list[str]) -> None:
    """One namespace holds every module: no name may mean two things in it."""
    owner: dict[str, str] = {}
    for name in order:
        for defined in defined_names(modules[name].tree):
            if owner.get(defined, name) != name:
                raise UserError(f"{defined} is defined at top level in both {owner[defined]}.py and {name}.py; "
                                f"the kernel puts both in one namespace, so rename one")
            owner[defined] = name
    bound: dict[str, tuple[str, str]] = {}
    for name in order:
        for node in modules[name].hoisted:
            for alias in node.names:
                local, target = binding(node, alias)
                if local in owner:
                    raise UserError(f"{name}.py imports {local} (`{ast.unparse(node)}`), but {owner[local]}.py defines "
                                    f"{local} at top level; rename one")
                if bound.get(local, (target, name))[0] != target:
                    raise UserError(f"{local} is imported as {target} in {name}.py and as {bound[local][0]} in "
                                    f"{bound[local][1]}.py; the kernel has one namespace, so use one name for each")
                bound.setdefault(local, (target, name))
    for name in order:
        for target, wanted, line in modules[name].wanted:
            if owner.get(wanted) != target and wanted not in imported_names(modules[target]):
                raise UserError(f"{name}.py line {line}: imports {wanted} from .{target}, but {target}.py defines "
                                f"no top-level {wanted}")


def defined_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level, other than its hoisted and package imports."""
    names: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return  # their bodies have their own scope
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if not top and not getattr(node, "level", 0):
                names.update(binding(node, alias)[0] for alias in node.names)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child, top=False)

    for statement in tree.body:
        visit(statement, top=True)
    return names


def imported_names(module: InlinedModule) -> set[str]:
    """Names a module re-exports by importing them: hoisted imports and its own package imports."""
    return {binding(node, alias)[0] for node in module.hoisted for alias in node.names} | \
        {wanted for _, wanted, _ in module.wanted}


def binding(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> tuple[str, str]:
    """(local name, what it refers to) for one imported name."""
    if isinstance(node, ast.ImportFrom):
        return alias.asname or alias.name, f"{node.module}.{alias.name}"
    if alias.asname:
        return alias.asname, alias.name
    root = alias.name.split(".")[0]
    return root, root


def import_item(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> tuple:
    if isinstance(node, ast.ImportFrom):
        return ("from", node.module, alias.name, alias.asname)
    return ("import", alias.name, alias.asname)


def import_block(hoisted_per_module) -> str:
    """The hoisted imports, de-duplicated: __future__ first, then the standard library, then the rest."""
    plain: set[tuple[str, str | None]] = set()
    froms: dict[str, set[tuple[str, str | None]]] = {}
    for hoisted in hoisted_per_module:
        for node in hoisted:
            for alias in node.names:
                if isinstance(node, ast.ImportFrom):
                    froms.setdefault(node.module, set()).add((alias.name, alias.asname))
                else:
                    plain.add((alias.name, alias.asname))

    def group(module: str) -> int:
        root = module.split(".")[0]
        return 0 if root == "__future__" else 1 if root in sys.stdlib_module_names else 2

    lines = [(group(name), name, 0, f"import {name}" + (f" as {asname}" if asname else "")) for name, asname in plain]
    for module, names in froms.items():
        listed = ", ".join(name + (f" as {asname}" if asname else "") for name, asname in sorted(names, key=str))
        lines.append((group(module), module, 1, f"from {module} import {listed}"))
    lines.sort()
    blocks: list[list[str]] = [[], [], []]
    for kind, _, _, text in lines:
        blocks[kind].append(text)
    return "\n\n".join("\n".join(block) for block in blocks if block)


def kernel_header(order: list[str]) -> str:
    return f"""\
# Kaggle Digit Recognizer: multinomial logistic regression in PyTorch.
#
# GENERATED by `digit-recognizer bundle` from the digit_recognizer package: do not edit this file.
# Change the package and run `digit-recognizer bundle` again (`digit-recognizer bundle --check`
# says when this file is stale), so that the code tested locally is the code that runs on Kaggle.
#
# On Kaggle (attach the digit-recognizer competition data; no internet needed) it finds the data
# under /kaggle/input, trains on the GPU when one is attached (else the CPU), reports accuracy on
# a held-out validation split and writes /kaggle/working/submission.csv. Anywhere else:
#     python digit_recognizer_kernel.py --input DATA_FOLDER --output OUT_FOLDER [--epochs N ...]
#
# Each section below is one module of the package, dependencies first, so it reads top to bottom:
#     {", ".join(order)}"""


def section_heading(title: str) -> str:
    text = f"{SECTION_MARK}{'run' if title == 'run' else f'from {PACKAGE}/core/{title}.py'} "
    return text + "=" * max(4, SECTION_WIDTH - len(text))


def module_section(module: InlinedModule) -> str:
    heading = [section_heading(module.name)]
    heading += [f"# {line}".rstrip() for line in module.docstring.splitlines()]
    return "\n".join(heading + [""] + body_lines(module))


CUT = object()


def body_lines(module: InlinedModule) -> list[str]:
    """The module's lines without its cut statements, with blank lines tidied where they were."""
    removed: set[int] = set()
    replaced: dict[int, str] = {}
    for node, block in module.dropped:
        removed.update(range(node.lineno - 1, node.end_lineno))
    for node, block in module.dropped:
        if block is not module.tree.body and all(any(s is d for d, _ in module.dropped) for s in block):
            # The block held nothing but package imports: keep it valid Python.
            first = block[0]
            replaced[first.lineno - 1] = module.lines[first.lineno - 1][:first.col_offset] + "pass"
    marked: list = []
    for index, line in enumerate(module.lines):
        if index in replaced:
            marked.append(replaced[index])
        elif index in removed:
            if not marked or marked[-1] is not CUT:
                marked.append(CUT)
        else:
            marked.append(line)
    return tidy_blank_lines(marked)


def tidy_blank_lines(marked: list) -> list[str]:
    """Shorten the blank runs around cut statements; runs elsewhere (maybe inside strings) stay as written."""
    out: list[str] = []
    index = 0
    while index < len(marked):
        end = index
        while end < len(marked) and (marked[end] is CUT or not marked[end].strip()):
            end += 1
        if end == index:
            out.append(marked[index])
            index += 1
            continue
        run = marked[index:end]
        blanks = [line for line in run if line is not CUT]
        if any(line is CUT for line in run) or not out or end == len(marked):
            following = marked[end] if end < len(marked) else ""
            opener = out and out[-1].rstrip().endswith(":")
            limit = 0 if not out or end == len(marked) or opener else 1 if following[:1].isspace() else 2
            blanks = [""] * min(len(blanks), limit)
        out += blanks
        index = end
    return out


def split_sections(text: str) -> dict[str, str]:
    """A kernel's text by section: '' for the header and imports, a module name, or 'run'."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        match = SECTION_LINE.match(line)
        if match:
            current = match.group(1) or match.group(2)
            sections[current] = []
        sections[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def kernel_staleness(root: Path, package_dir: Path = PACKAGE_DIR) -> str | None:
    """None when root's kernel is what `bundle` would write now; else one line naming what changed."""
    path = root / KERNEL_FILE
    kernel = build_kernel(package_dir)
    try:
        committed = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{path}: no such file; run `digit-recognizer bundle` to write it"
    if committed == kernel.text:
        return None
    return f"{path} is stale: {describe_changes(committed, kernel)}; run `digit-recognizer bundle` to regenerate it"


def describe_changes(committed: str, kernel: Kernel) -> str:
    old, new = split_sections(committed), split_sections(kernel.text)
    changed = [f"{name}.py" for name in kernel.modules if old.get(name) != new[name]]
    gone = [f"{name}.py" for name in old if name not in new]
    parts = []
    if changed:
        parts.append(f"the section{'s' if len(changed) > 1 else ''} from {', '.join(changed)} changed")
    if gone:
        parts.append(f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} no longer part of the kernel")
    if old[""] != new[""]:
        parts += import_changes(preamble_imports(old[""]), kernel)
    if old.get("run") != new["run"]:
        parts.append("the run block changed")
    return "; ".join(parts) or "the layout changed"


def import_changes(old_items: set[tuple] | None, kernel: Kernel) -> list[str]:
    """Which modules brought new imports, and which imports no module needs any more."""
    if old_items is None:
        return ["the header or imports changed"]
    added_by = [f"{name}.py" for name in kernel.modules if kernel.imports_of[name] - old_items]
    dropped = old_items - set().union(*kernel.imports_of.values())
    parts = [f"the imports of {', '.join(added_by)} changed"] if added_by else []
    if dropped:
        names = sorted(f"{item[1]}.{item[2]}" if item[0] == "from" else item[1] for item in dropped)
        parts.append(f"no module imports {', '.join(names)} any more")
    return parts or ["the header changed"]


def preamble_imports(text: str) -> set[tuple] | None:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    return {import_item(node, alias) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names}


def write_kernel(root: Path, package_dir: Path = PACKAGE_DIR) -> tuple[Path, Kernel, bool]:
    """Write root's kernel file; return its path, the kernel, and whether the file changed."""
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; --root takes the repository folder that holds kernel/")
    kernel = build_kernel(package_dir)
    path = root / KERNEL_FILE
    if path.is_file() and path.read_text(encoding="utf-8") == kernel.text:
        return path, kernel, False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, kernel.text)
    return path, kernel, True


def cmd_bundle(args: argparse.Namespace) -> int:
    if args.check:
        problem = kernel_staleness(args.root)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"{args.root / KERNEL_FILE}: up to date")
        return 0
    path, kernel, changed = write_kernel(args.root)
    lines = kernel.text.count("\n")
    print(f"{'wrote' if changed else 'unchanged:'} {path} ({lines} lines; modules {', '.join(kernel.modules)})")
    return 0


def add_commands(commands) -> None:
    bundle = commands.add_parser("bundle", help=f"write the Kaggle kernel {KERNEL_FILE} from the package")
    bundle.add_argument("--root", type=Path, default=Path("."),
                        help="the repository folder whose kernel/ is written or checked (default: the current folder)")
    bundle.add_argument("--check", action="store_true",
                        help="write nothing; exit 1, naming the changed modules, if the kernel is not what would be written")
    bundle.set_defaults(handler=cmd_bundle)
