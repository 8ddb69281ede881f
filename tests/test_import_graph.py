"""The floor plan holds: no import circle in the core, the service or the extension, and no room of the core
importing from a room above it (docs/architecture.md draws the plan).

Every import counts, those inside functions too (a lazy import may keep start-up fast; it may
not hide a circle); only `if TYPE_CHECKING:` blocks do not, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Folder -> the name its package is imported by (backend/ installs as clipascene_backend; the
#: extension's package is imported from inkscape_ext/, the folder Inkscape runs it from).
PACKAGES = {"clipascene_core": "clipascene_core", "backend": "clipascene_backend",
            "inkscape_ext/clipascene_ext": "clipascene_ext"}
#: The core's rooms, from the ground up: a module may import from its own room and those below.
#: "" is the ground: the modules at the package top (errors, paths, options, config, version),
#: which every room shares. The package's own __init__.py, the front door, stands above all.
ROOMS = ("", "io", "models", "sketch", "scene", "cli")


def module_name(path: Path) -> str:
    folder = next(folder for folder in PACKAGES if path.is_relative_to(ROOT / folder))
    rest = path.relative_to(ROOT / folder).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for folder in PACKAGES for path in (ROOT / folder).rglob("*.py")
            if "__pycache__" not in path.parts}


def _runtime_nodes(tree: ast.AST):
    """The import statements that can run: all but those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (child for branch in node.orelse for child in _runtime_nodes_of(branch))
            continue
        yield node
        yield from _runtime_nodes(node)


def _runtime_nodes_of(node: ast.AST):
    yield node
    yield from _runtime_nodes(node)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that the module `name` (at `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:  # `from package import module` imports the module
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return {module for module in found if module in known and module != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def room_rank(module: str) -> int:
    """The floor of a core module: its room's place in ROOMS; the front door above all."""
    if module == "clipascene_core":
        return len(ROOMS)
    parts = module.split(".")
    room = parts[1] if len(parts) > 2 or (ROOT / "clipascene_core" / parts[1]).is_dir() else ""
    assert room in ROOMS, f"{module}: a room the plan does not name; add it to ROOMS and the docs"
    return ROOMS.index(room)


def test_the_graph_is_read():
    """The walk sees what it must, or its silence would prove nothing."""
    edges = graph()
    assert "clipascene_core.scene.matrix" in edges["clipascene_core.cli.commands"]
    assert "clipascene_core.options" in edges["clipascene_core.config"]
    # A function-level import is an arrow too (the front door imports the matrix lazily).
    assert "clipascene_core.scene.matrix" in edges["clipascene_core"]
    assert "clipascene_core.config" in edges["clipascene_backend.params"]
    assert "clipascene_ext.picker" in edges["clipascene_ext.effects"]


def test_no_import_circles():
    found = circles(graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(group) for group in found)


def test_no_room_imports_from_a_room_above_it():
    edges = graph()
    upward = [f"{module} -> {target}" for module, targets in sorted(edges.items())
              if module.startswith("clipascene_core") for target in sorted(targets)
              if target.startswith("clipascene_core") and room_rank(target) > room_rank(module)]
    assert not upward, "imports from a room above: " + ", ".join(upward)


def test_the_core_does_not_import_the_service():
    edges = graph()
    wrong = [f"{module} -> {target}" for module, targets in edges.items()
             if module.startswith("clipascene_core") for target in targets
             if target.startswith("clipascene_backend")]
    assert not wrong, wrong


def test_circles_and_upward_imports_are_caught():
    """The checks themselves: a circle through a lazy import, and a room reaching up."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    assert room_rank("clipascene_core.sketch.engine") > room_rank("clipascene_core.models.clip")
    assert room_rank("clipascene_core.config") < room_rank("clipascene_core.io.records")
