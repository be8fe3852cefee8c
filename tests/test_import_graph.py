"""The import graph of ``kcomplex`` and ``momos``: no cycles, no reaching into private names.

Every import counts, including those inside functions (lazy imports): a lazy import only
defers a cycle, it does not remove it. Imports under ``if TYPE_CHECKING:`` never run, so
they make no cycle; they still may not name private names. The graph is read from the
source with :mod:`ast`, so nothing here imports torch.

The rules:

- No cycle among momos's modules, nor among kcomplex's.
- No module imports another module's private names (``_name``), by ``from X import _name``
  or by ``X._name`` on an imported module ``X``. A private *module* (``momos._kernels``,
  ``momos._distributed``) may be imported: a private module's public names are its
  package's internal API, shared by the package's modules and hidden from its users.
  Dunder names (``__version__``) are not private.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kcomplex", "momos")

def _modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    """The package that relative imports in ``module`` start from."""
    is_package = MODULES[module].name == "__init__.py"
    return module if is_package else module.rpartition(".")[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from ... import`` in ``module``."""
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _dotted(node.test) in ("TYPE_CHECKING",
                                                              "typing.TYPE_CHECKING"):
            for statement in node.body:
                inside.update(ast.walk(statement))
    return inside


def _imports(module: str, runtime: bool = False
             ) -> Iterator[tuple[str, str | None, str | None]]:
    """``(imported module, name imported from it or None, local alias or None)`` of every
    import statement of ``module``, lazy ones included; with ``runtime``, those under
    ``if TYPE_CHECKING:`` left out."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    skip = _type_checking_only(tree) if runtime else set()
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, alias.asname
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                yield source, alias.name, alias.asname or alias.name


def _edges(module: str) -> set[str]:
    """The modules of the packages that ``module`` imports when it runs."""
    out = set()
    for source, name, _ in _imports(module, runtime=True):
        target = f"{source}.{name}" if name and f"{source}.{name}" in MODULES else source
        if target in MODULES and target != module:
            out.add(target)
    return out


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` of an attribute chain on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _private_uses(module: str) -> set[tuple[str, str]]:
    """``(module, "X._name")`` for every private name of another module X that
    ``module`` imports or reads off an imported module."""
    found = set()
    aliases = {}  # local dotted name -> module of the packages it stands for
    for source, name, alias in _imports(module):
        if name is None:  # import a.b [as c]
            if source in MODULES:
                aliases[alias or source] = source
            # ``import a.b`` also binds ``a``, through which ``a.b._x`` is reached.
            if alias is None:
                head = source.partition(".")[0]
                if head in MODULES:
                    aliases[head] = head
            continue
        if source not in MODULES or source == module or name == "*":
            continue
        if f"{source}.{name}" in MODULES:  # a submodule, private or not, is allowed
            aliases[alias] = f"{source}.{name}"
        elif _is_private(name):
            found.add((module, f"{source}.{name}"))
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        owner = _dotted(node.value)
        target = aliases.get(owner) if owner else None
        if target is None and owner in MODULES and owner.partition(".")[0] in aliases:
            target = owner  # a.b._x after ``import a.b``
        if target and target != module and f"{target}.{node.attr}" not in MODULES:
            found.add((module, f"{target}.{node.attr}"))
    return found


def _cycles(package: str) -> set[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan)."""
    nodes = [m for m in MODULES if m.partition(".")[0] == package]
    graph = {m: sorted(t for t in _edges(m) if t.partition(".")[0] == package) for m in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.add(tuple(sorted(component)))

    for v in nodes:
        if v not in index:
            visit(v)
    return components


def test_the_graph_is_read():
    # Guards against a vacuous pass: the walk sees lazy imports and relative ones.
    assert {"momos", "momos.experiment", "momos.report", "kcomplex.plot"} <= set(MODULES)
    assert "momos.report" in _edges("momos.experiment")  # a lazy import
    assert "momos.train" in _edges("momos.experiment")  # a relative import


def test_momos_has_no_cycle():
    assert _cycles("momos") == set()


def test_kcomplex_has_no_cycle():
    assert _cycles("kcomplex") == set()


def test_no_private_imports():
    found = set().union(*(_private_uses(m) for m in MODULES))
    assert found == set()


def test_the_checks_can_fail(tmp_path, monkeypatch):
    # Guards against a vacuous pass: a cycle and a private import, planted, are found.
    for name, text in {"a": "from pkg import b\n", "b": "from .a import _x\n"}.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.setitem(MODULES, "pkg.a", tmp_path / "a.py")
    monkeypatch.setitem(MODULES, "pkg.b", tmp_path / "b.py")
    assert _cycles("pkg") == {("pkg.a", "pkg.b")}
    assert _private_uses("pkg.b") == {("pkg.b", "pkg.a._x")}
