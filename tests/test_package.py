"""The installed package: one top-level import name, `pow_mcp`, so that nothing named `pow`,
`store` or `server` lands in a user's environment; and the layering its three parts keep."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

# Run from a directory that is not the checkout, so only what is installed can be imported.
IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
names = []
for top in ("pow_mcp.pow", "pow_mcp.store", "pow_mcp.server"):
    package = importlib.import_module(top)
    names += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
for name in names:
    # Not alembic's scripts (alembic runs them) nor __main__ (it would start the server).
    if ".migrations." not in name and not name.endswith("__main__"):
        importlib.import_module(name)
print(len(names))
print(sorted({m.split(".")[0] for m in sys.modules} & {"pow", "store", "server"}))
print([importlib.util.find_spec(n) for n in ("pow", "store", "server")])
"""


def test_everything_imports_under_pow_mcp_and_nothing_at_the_top(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, top_level, specs = done.stdout.splitlines()
    assert int(count) > 50
    assert top_level == "[]"
    assert specs == "[None, None, None]"


def test_the_console_script_names_the_package(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("pow-mcp")
    done = subprocess.run(
        [script, "--version"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pow-mcp ")


# -- the layering ------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parent.parent / "pow_mcp"
LAYERS = ("pow", "store", "server")  # each imports only the ones before it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports, wherever in it (not under `if TYPE_CHECKING`)."""
    found: set[str] = set()

    class Imports(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            for child in node.orelse if name == "TYPE_CHECKING" else [*node.body, *node.orelse]:
                self.visit(child)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module is None:
                return
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                is_file = any(
                    (PACKAGE.parent / submodule.replace(".", "/")).parent.glob(f"{alias.name}.*")
                )
                found.add(submodule if submodule in modules or is_file else node.module)

    Imports().visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    names = set(paths)
    return {name: imported(path, names) - {name} for name, path in paths.items()}


def test_each_part_imports_only_the_parts_before_it() -> None:
    wrong = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if module.count(".")
        and target.count(".")
        and LAYERS.index(target.split(".")[1]) > LAYERS.index(module.split(".")[1])
    ]
    assert wrong == []


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 60
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert cycles == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


# -- ARCHITECTURE.md -----------------------------------------------------------------------------

ARCHITECTURE = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")


def test_the_architecture_page_names_every_module() -> None:
    """Each module appears in ARCHITECTURE.md's map by its file name, or its folder does
    (`jsonfile/`, `sql/`): a module added without a place on the map fails here."""
    named = set(re.findall(r"`([^`\s]+)`", ARCHITECTURE))
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" or "migrations" in path.parts:
            continue
        # A folder named as a whole covers its modules; a layer (`store/`) does not.
        folder = path.parent.name + "/" if path.parent.name not in LAYERS else path.name
        if not ({path.name, folder} & named or any(n.endswith("/" + path.name) for n in named)):
            missing.append(str(path.relative_to(PACKAGE)))
    assert not missing, f"ARCHITECTURE.md does not name: {missing}"


def test_every_path_the_architecture_page_names_exists() -> None:
    """A file or folder named in ARCHITECTURE.md is one that exists (a renamed module must
    be renamed there too)."""
    root = PACKAGE.parent
    tree = [p for top in ("pow_mcp", "ui", "tests", "benchmarks") for p in (root / top).rglob("*")]
    files = {p.relative_to(root).as_posix() for p in tree} | {"pow_mcp", "ui", "tests"}
    named = {n for n in re.findall(r"`([^`\s]+)`", ARCHITECTURE) if re.search(r"\.(py|c)$|/$", n)}
    stale = [
        n
        for n in sorted(named)
        if not any(f == n.rstrip("/") or f.endswith("/" + n.rstrip("/")) for f in files)
    ]
    assert not stale, f"ARCHITECTURE.md names what does not exist: {stale}"
