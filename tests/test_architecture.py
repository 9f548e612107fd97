"""The package's import structure and size limits, read from the source with ``ast``.

Every ``import`` counts: at module level, inside functions and under ``if TYPE_CHECKING:``;
relative (``from ..recipe import x``) and absolute (``from hptransfer.recipe import x``).

* A subpackage's ``__init__`` exports what users need (its ``__all__``; at most
  :data:`MAX_PUBLIC_NAMES` over all subpackages); its ``_private`` modules hold the plumbing, which other
  subpackages may import (as optuna's do), but a ``_private`` *name* belongs to its subpackage: no
  other subpackage (and no top-level module) imports one.
* The subpackages form no cycle (edge A -> B when a module of A imports from B); the top-level
  modules ``errors``, ``_io`` and ``_version`` are leaves that import nothing of the package.
* ``hptransfer/`` holds at most 8 modules beside its subpackages; no module is over 400 lines
  and no function or method over 80 (``def`` line to the end of the body).

Dynamic imports (``importlib.import_module`` with a computed name) are not seen. Also: no test
module imports another (shared test code lives in ``tests/_helpers.py``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hptransfer"

MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_PUBLIC_NAMES = 110  # names in the subpackages' __all__, together (the top level's come on top); 230 before the
# front-door redesign cut it to 100; the rest is room for deliberate additions (lr_scheduler, hf.Trainer)
LEAVES = {"errors", "_io", "_version"}  # top-level modules that import nothing of the package


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root, e.g. "hptransfer/check/_sweep.py"
    line: int
    source: str  # the import statement as written
    importer: str  # dotted module name of the importing file
    module: str  # dotted module (or package) imported from
    name: str | None  # the name taken from it (None: the module itself)

    def where(self) -> str:
        return f"{self.file}:{self.line} `{self.source}`"


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


class Package:
    """The modules of one package directory, their imports of the package, sizes and functions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name
        self.files: dict[str, Path] = {}  # dotted module name -> file
        self.packages: set[str] = set()
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
                self.packages.add(".".join(parts))
            self.files[".".join(parts)] = path
        self.trees = {mod: ast.parse(p.read_text(encoding="utf-8"), str(p)) for mod, p in self.files.items()}

    def rel(self, module: str) -> str:
        return self.files[module].relative_to(self.root.parent).as_posix()

    def imports(self) -> list[Import]:
        out: list[Import] = []
        for mod, tree in self.trees.items():
            lines = self.files[mod].read_text(encoding="utf-8").splitlines()
            base = mod if mod in self.packages else mod.rpartition(".")[0]
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name == self.name or alias.name.startswith(self.name + "."):
                            out.append(self._record(mod, node, lines, alias.name, None))
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        anchor = base.split(".")
                        anchor = anchor[: len(anchor) - (node.level - 1)]
                        target = ".".join(anchor + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    if not (target == self.name or target.startswith(self.name + ".")):
                        continue
                    for alias in node.names:
                        sub = f"{target}.{alias.name}"
                        if sub in self.files:  # `from . import _optimum`: a module, not a name
                            out.append(self._record(mod, node, lines, sub, None))
                        else:
                            out.append(self._record(mod, node, lines, target, alias.name))
        return out

    def _record(self, mod: str, node: ast.stmt, lines: list[str], module: str, name: str | None) -> Import:
        end = node.end_lineno or node.lineno
        source = " ".join(s.strip() for s in lines[node.lineno - 1 : end])
        return Import(self.rel(mod), node.lineno, source, mod, module, name)

    def group(self, module: str) -> str:
        """The subpackage a module belongs to, or the top-level module's own name
        (``"__init__"`` for the package root)."""
        parts = module.split(".")[1:]
        return parts[0] if parts else "__init__"

    def is_subpackage(self, group: str) -> bool:
        return f"{self.name}.{group}" in self.packages


def private_import_violations(pkg: Package) -> list[str]:
    """One line per import statement that takes a private name (``_x``) from another group."""
    bad: dict[str, list[str]] = {}
    for imp in pkg.imports():
        src, dst = pkg.group(imp.importer), pkg.group(imp.module)
        if src == dst and pkg.is_subpackage(src):
            continue  # inside one subpackage, private is fine
        if imp.name and _is_private(imp.name):
            head = f"{imp.where()}: {src!r} imports from {dst!r} the private"
            bad.setdefault(head, []).append(f"{imp.module}.{imp.name}")
    return [f"{head} {', '.join(names)}" for head, names in bad.items()]


def public_names(pkg: Package) -> dict[str, list[str]]:
    """Each subpackage's ``__all__``, read from its ``__init__`` with ``ast``."""
    out: dict[str, list[str]] = {}
    for mod in sorted(pkg.packages):
        if mod == pkg.name:
            continue
        for node in pkg.trees[mod].body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                out[mod.split(".", 1)[1]] = list(ast.literal_eval(node.value))
    return out


def subpackage_graph(pkg: Package) -> dict[str, dict[str, list[Import]]]:
    """``graph[a][b]``: the imports that make group ``a`` depend on group ``b`` (``a != b``)."""
    graph: dict[str, dict[str, list[Import]]] = {}
    for imp in pkg.imports():
        a, b = pkg.group(imp.importer), pkg.group(imp.module)
        graph.setdefault(a, {})
        graph.setdefault(b, {})
        if a != b:
            graph[a].setdefault(b, []).append(imp)
    return graph


def find_cycles(graph: dict[str, dict[str, list[Import]]]) -> list[tuple[list[str], list[str]]]:
    """Per strongly connected component (subpackages that reach each other): a shortest cycle
    through its first member, and the members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for comp in components:
        members, start = set(comp), comp[0]
        # breadth-first from start back to start inside the component: a shortest cycle
        paths = {start: [start]}
        queue, cycle = [start], None
        while queue and cycle is None:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    cycle = [*paths[v], start]
                    break
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    queue.append(w)
        cycles.append((cycle or [start], comp))
    return cycles


def cycle_violations(pkg: Package) -> list[str]:
    """Per group of mutually dependent subpackages: one cycle, then every import inside the group."""
    graph = subpackage_graph(pkg)
    bad = []
    for cycle, comp in find_cycles(graph):
        members = set(comp)
        lines = [" -> ".join(cycle) + f"  (mutually dependent: {', '.join(comp)})"]
        for a in sorted(members):
            for b in sorted(set(graph[a]) & members):
                lines += [f"    {a} -> {b}: {i.where()}" for i in graph[a][b]]
        bad.append("\n".join(lines))
    return bad


def leaf_violations(pkg: Package) -> list[str]:
    return [f"{imp.where()}: leaf module {pkg.group(imp.importer)!r} imports {imp.module!r}"
            for imp in pkg.imports()
            if pkg.group(imp.importer) in LEAVES and pkg.group(imp.module) != pkg.group(imp.importer)]


def top_level_modules(pkg: Package) -> list[str]:
    return sorted(p.name for p in pkg.root.glob("*.py"))


def long_modules(pkg: Package) -> list[str]:
    bad = []
    for mod, path in pkg.files.items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            bad.append(f"{pkg.rel(mod)}: {n} lines (limit {MAX_MODULE_LINES})")
    return bad


def long_functions(pkg: Package) -> list[str]:
    bad = []
    for mod, tree in pkg.trees.items():
        owners = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    names, up = [node.name], owners.get(node)
                    while up is not None and not isinstance(up, ast.Module):
                        if isinstance(up, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                            names.append(up.name)
                        up = owners.get(up)
                    qual = ".".join(reversed(names))
                    bad.append(f"{pkg.rel(mod)}:{node.lineno} {qual}(): {n} lines (limit {MAX_FUNCTION_LINES})")
    return bad


@pytest.fixture(scope="module")
def pkg() -> Package:
    return Package(PACKAGE)


def _fail(what: str, problems: list[str]) -> None:
    assert not problems, f"{len(problems)} {what}:\n" + "\n".join(problems)


# ---- the package ----------------------------------------------------------------------------


def test_the_scan_sees_the_package(pkg: Package) -> None:
    # Guards the checks below against passing because they read nothing.
    assert len(pkg.files) > 30 and {"check", "parametrization", "recipe", "cli"} <= {
        pkg.group(m) for m in pkg.files}
    imports = pkg.imports()
    assert len(imports) > 50
    assert any(i.importer == "hptransfer.check._report" and i.module == "hptransfer.recipe" for i in imports)
    assert any(i.line > 1 and i.module == "hptransfer.errors" for i in imports)


def test_the_subpackages_public_surface_is_small_and_real(pkg: Package) -> None:
    names = public_names(pkg)
    assert sum(map(len, names.values())) <= MAX_PUBLIC_NAMES, {k: len(v) for k, v in names.items()}
    import importlib

    for sub, exported in names.items():
        module = importlib.import_module(f"hptransfer.{sub}")
        missing = [n for n in exported if not hasattr(module, n)]
        assert not missing, f"hptransfer.{sub}.__all__ names {missing}, which it does not define"


def test_the_documented_dependencies_are_the_imports(pkg: Package) -> None:
    """docs/architecture.md's table says what each subpackage depends on; the imports must agree."""
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)/` \| .* \| ([^|]*) \|$", doc, flags=re.M)
    graph = subpackage_graph(pkg)
    documented = {sub: set() if deps.strip() == "–" else {d.split(" ")[0] for d in deps.split(", ")}
                  for sub, deps in rows if sub != "cli"}
    groups = (set(graph) | set(documented)) - {"cli"}  # a subpackage that imports nothing of ours has no edge
    actual = {a: {b for b in graph.get(a, {}) if pkg.is_subpackage(b)} for a in groups if pkg.is_subpackage(a)}
    assert documented == actual


def test_no_private_import_across_subpackages(pkg: Package) -> None:
    _fail("import(s) of another subpackage's private module or name", private_import_violations(pkg))


def test_subpackages_form_no_cycle(pkg: Package) -> None:
    _fail("cycle(s) between subpackages", cycle_violations(pkg))


def test_leaf_modules_import_nothing_of_the_package(pkg: Package) -> None:
    _fail("import(s) in leaf modules", leaf_violations(pkg))


def test_top_level_holds_few_modules(pkg: Package) -> None:
    modules = top_level_modules(pkg)
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, (
        f"hptransfer/ holds {len(modules)} modules beside its subpackages (limit {MAX_TOP_LEVEL_MODULES}): {modules}")


def test_no_module_over_the_line_limit(pkg: Package) -> None:
    _fail("module(s) over the line limit", long_modules(pkg))


def test_no_function_over_the_line_limit(pkg: Package) -> None:
    _fail("function(s) over the line limit", long_functions(pkg))


def test_no_test_module_imports_another() -> None:
    # Shared test code lives in tests/_helpers.py (or a conftest.py fixture), never in a test module.
    tests = Path(__file__).resolve().parent
    bad = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(tests.parent)}:{node.lineno} imports {n}" for n in names
                    if n.split(".")[-1].startswith("test_") or n.split(".")[-1] == "conftest"]
    _fail("import(s) of a test module", bad)


# ---- the checks themselves, on a package written here -----------------------------------------


def _write(root: Path, files: dict[str, str]) -> Package:
    for name, text in files.items():
        path = root / "hptransfer" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Package(root / "hptransfer")


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    pkg = _write(tmp_path, {
        "__init__.py": "", "_io.py": "", "errors.py": "from .a import A\n",
        "a/__init__.py": "from ._impl import A\n",
        "a/_impl.py": "from .._io import w\nfrom ..b import B\nA = 1\n",
        "b/__init__.py": "B = 1\n",
        "b/_x.py": "def f():\n    from hptransfer.a._impl import _secret\n    from ..a import _hidden\n",
        "b/_y.py": "from ..c import C\n",
        "c/__init__.py": "import hptransfer.b._x\nC = 1\n",
        "c/_long.py": f"class K:\n    def method(self):\n{body}\n",
    })
    private = private_import_violations(pkg)
    assert len(private) == 2, private  # plumbing modules (`from hptransfer.a._impl import A`) are allowed
    assert any("hptransfer/b/_x.py:2" in p and "hptransfer.a._impl._secret" in p for p in private)  # local
    assert any("hptransfer/b/_x.py:3" in p and "_hidden" in p for p in private)  # a private name
    cycles = cycle_violations(pkg)
    assert len(cycles) == 1, cycles  # a <-> b <-> c: one group
    head, *edges = cycles[0].splitlines()
    assert head == "a -> b -> a  (mutually dependent: a, b, c)"
    assert len(edges) == 5 and any("c -> b: hptransfer/c/__init__.py:1" in e for e in edges)
    assert leaf_violations(pkg) and "errors" in leaf_violations(pkg)[0]
    (long,) = long_functions(pkg)
    assert long.startswith("hptransfer/c/_long.py:2 K.method(): 81 lines")
