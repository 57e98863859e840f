"""The configuration: every BACKDROP_* variable declared once (core/config.py), with one parse
each, read on first use; no other module reads one from the environment; the README lists them."""

import ast
import re
from pathlib import Path

import pytest

from core.config import NAMED, VARIABLES, config
from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("core", "storage", "backdrop", "app_pages") for p in (ROOT / folder).rglob("*.py")]
SOURCES.append(ROOT / "streamlit_app.py")


def test_every_variable_the_product_names_is_declared():
    named = {name for path in SOURCES for name in re.findall(r"\bBACKDROP_[A-Z_]+[A-Z]\b", path.read_text())}
    assert named - set(NAMED) == set()
    assert len(NAMED) == len(VARIABLES), "a variable declared twice"


def _environment_reads(path: Path) -> list[str]:
    """``os.environ.get("BACKDROP_...")``, ``os.environ["BACKDROP_..."]``, ``os.getenv(...)``."""
    reads = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr == "getenv" or getattr(node.func.value, "attr", None) == "environ"):
            arguments = node.args[:1]
        elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "environ":
            arguments = [node.slice]
        else:
            continue
        reads += [a.value for a in arguments if isinstance(a, ast.Constant) and str(a.value).startswith("BACKDROP_")]
        reads += ["(a name computed at run time)" for a in arguments if not isinstance(a, ast.Constant)
                  and path.name != "config.py"]
    return reads


def test_only_the_configuration_reads_the_environment():
    offenders = {str(p.relative_to(ROOT)): reads for p in SOURCES
                 if p != ROOT / "core" / "config.py" and (reads := _environment_reads(p))}
    assert offenders == {}


def test_the_readme_lists_every_variable():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Configuration", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(BACKDROP_[A-Z_]+)`", section, flags=re.M)
    assert sorted(listed) == sorted(NAMED)


def test_defaults_when_unset(monkeypatch):
    for variable in VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
    current = config()
    assert current.max_pixels == 50_000_000 and current.max_queued_per_user == 20 and current.cache_mb == 512.0
    assert current.cuda_graphs is True and current.compile is False and current.compile_cache is None
    assert current.ray_address == "" and current.ray_workers is None and current.database_url == ""
    assert current.data_dir == Path("data") and current.device == "auto"


@pytest.mark.parametrize("text, value", [("1", True), ("on", True), ("YES", True), ("0", False), ("off", False),
                                         ("false", False), (" no ", False)])
def test_one_parse_of_a_switch(monkeypatch, text, value):
    """BACKDROP_COMPILE=0 is off everywhere (it was on for the data folder's compile cache)."""
    monkeypatch.setenv("BACKDROP_COMPILE", text)
    monkeypatch.setenv("BACKDROP_CUDA_GRAPHS", text)
    assert config().compile is value and config().cuda_graphs is value


@pytest.mark.parametrize("name, text, message", [
    ("BACKDROP_COMPILE", "maybe", "BACKDROP_COMPILE='maybe': must be one of 1, true, yes, on, 0, false, no, off"),
    ("BACKDROP_MAX_PIXELS", "lots", "BACKDROP_MAX_PIXELS='lots': must be a whole number above 0"),
    ("BACKDROP_RAY_WORKERS", "0", "BACKDROP_RAY_WORKERS='0': must be a whole number above 0"),
    ("BACKDROP_CACHE_MB", "-1", "BACKDROP_CACHE_MB='-1': must be a number of megabytes (0 or more)"),
    ("BACKDROP_VAE_TILE_PIXELS", "big", "BACKDROP_VAE_TILE_PIXELS='big': must be a whole number (0 or more)"),
    ("BACKDROP_DEVICE", "tpu", "BACKDROP_DEVICE='tpu': device must be one of"),
])
def test_a_bad_value_is_named_when_it_is_used(monkeypatch, name, text, message):
    monkeypatch.setenv(name, text)
    current = config()  # the other variables still read: only using that value fails
    assert current.data_dir is not None
    with pytest.raises(InputError, match=re.escape(message)):
        current.get(name)


def test_parsed_once_until_it_changes(monkeypatch):
    monkeypatch.setenv("BACKDROP_COMPILE_CACHE", "/tmp/compiled")
    first = config().compile_cache
    assert first == Path("/tmp/compiled") and config().compile_cache is first, "parsed once, then kept"
    monkeypatch.setenv("BACKDROP_COMPILE_CACHE", "/tmp/elsewhere")
    assert config().compile_cache == Path("/tmp/elsewhere")
    monkeypatch.delenv("BACKDROP_COMPILE_CACHE")
    assert config().compile_cache is None


def test_not_read_at_import():
    """Importing the product parses nothing: a bad variable does not stop an import."""
    import subprocess
    import sys

    code = ("import core.config as c, storage.jobs, storage.service, backdrop.cli; "
            "assert c._current is None; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "BACKDROP_MAX_PIXELS": "lots", "BACKDROP_COMPILE": "maybe"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
