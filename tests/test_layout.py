"""The layout the design promises, checked on the source: core is the pipeline and imports no
storage, command line or app; storage imports no command line or app; no production module has
process-wide side effects (mock patches, umask changes); the `backdrop` command is installed."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(folder: str) -> dict[str, set[str]]:
    """Top-level package of every import in every module of ``folder``, at any depth (the lazy
    imports inside functions count too)."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("folder, forbidden", [
    ("core", {"storage", "backdrop", "app_pages", "streamlit", "streamlit_app"}),
    ("storage", {"backdrop", "app_pages", "streamlit", "streamlit_app"}),
    ("backdrop", {"app_pages", "streamlit", "streamlit_app"}),
])
def test_layering(folder, forbidden):
    offenders = {module: sorted(names & forbidden) for module, names in imported_packages(folder).items() if names & forbidden}
    assert offenders == {}


def test_no_streamlit_pages_folder():
    """Streamlit runs every file of a ``pages/`` folder beside the main script as a page of its
    own until the process's first st.navigation call: after a restart, a bookmarked page URL
    would run without streamlit_app.py (no sidebar, narrow layout, helper modules listed as
    pages). The pages live in app_pages/, listed explicitly."""
    assert not (ROOT / "pages").exists()
    navigation = (ROOT / "streamlit_app.py").read_text()
    pages = sorted(p.name for p in (ROOT / "app_pages").glob("*.py") if f'"app_pages/{p.name}"' in navigation)
    assert pages == ["batch.py", "history.py", "models.py", "studio.py"]


def test_no_process_wide_side_effects_in_production_code():
    for folder in ("core", "storage", "backdrop", "app_pages"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert "unittest" not in text and "mock." not in text, path
            assert "umask(" not in text, path


def test_console_command_and_module_entry_point():
    command = Path(sys.executable).parent / "backdrop"
    for argv in ([str(command), "--help"], [sys.executable, "-m", "backdrop", "--help"]):
        proc = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=120)
        assert proc.returncode == 0, proc.stderr
        for sub in ("replace", "mask", "history", "show", "rerun", "delete", "export", "models", "eval", "batch",
                    "serve"):
            assert sub in proc.stdout


def _modules() -> dict[str, Path]:
    """Every module of the product by its dotted name (a package by its own name)."""
    modules = {"streamlit_app": ROOT / "streamlit_app.py"}
    for folder in ("core", "storage", "backdrop", "app_pages"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Which product modules each one imports, at any depth (lazy imports count: a circle of
    them still ties the modules into one), ``from package import module`` as the module."""
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {known(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}".rstrip(".")
                found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else known(base)
                          for alias in node.names}
        graph[name] = found - {None, name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a circle (the strongly
    connected components of more than one module, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "storage.lifecycle" in graph["storage.jobs"] and "backdrop.common" in graph["backdrop.replace"]


def test_the_app_does_not_depend_on_the_command_line():
    """The app's pages and its script reach policy and storage through storage/, never backdrop/."""
    graph = import_graph()
    app = {name: sorted(imported for imported in found if imported.startswith("backdrop"))
           for name, found in graph.items() if name == "streamlit_app" or name.startswith("app_pages")}
    assert {name: found for name, found in app.items() if found} == {}


STATUS_TEXTS = {"queued", "running", "done", "failed", "cancelled"}
LIFECYCLE = ROOT / "storage" / "lifecycle.py"


def _sources_of_the_job_lifecycle() -> dict[Path, ast.Module]:
    paths = [p for folder in ("storage", "backdrop", "app_pages") for p in (ROOT / folder).rglob("*.py")]
    return {path: ast.parse(path.read_text(), str(path)) for path in [*paths, ROOT / "streamlit_app.py"]
            if path != LIFECYCLE}


def _docstrings(tree: ast.Module) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def test_statuses_are_spelled_only_by_the_lifecycle():
    """storage.lifecycle.Status is the one place a status is written as text."""
    found = []
    for path, tree in _sources_of_the_job_lifecycle().items():
        skip = _docstrings(tree)
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in STATUS_TEXTS and id(node) not in skip]
    assert found == []


def test_only_the_lifecycle_changes_a_status_or_a_heartbeat():
    """No ``update(Generation)`` outside storage.lifecycle, no ``row.status = ...`` (nor its
    heartbeat or end), and no status or holder given to a new Generation (the row's other
    columns, such as favourite, are changed through the ORM where they belong)."""
    found = []
    for path, tree in _sources_of_the_job_lifecycle().items():
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "update" and node.args
                    and getattr(node.args[0], "id", None) == "Generation"):
                found.append(f"{where}: update(Generation)")
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                for part in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(part, ast.Attribute) and part.attr in ("status", "heartbeat_at", "finished_at"):
                        found.append(f"{where}: assigns .{part.attr}")
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Generation"
                    and any(k.arg in ("status", "heartbeat_at", "worker") for k in node.keywords)):
                found.append(f"{where}: Generation(status=...)")
    assert found == []
