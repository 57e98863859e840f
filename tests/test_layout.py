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
