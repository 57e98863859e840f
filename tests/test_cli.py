"""`backdrop replace` and `mask` on real photos, and every bad input: a clear
``error:`` message, exit status 2 and no output file."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backdrop.cli import main
from backdrop.common import variant_paths
from core.request import SCHEMA_VERSION
from test_imaging import bomb_png

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rotated_jpeg(tmp_path_factory, astronaut) -> Path:
    """A real photo saved as a JPEG whose EXIF says 'rotate 90 degrees clockwise'."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path_factory.mktemp("photos") / "photo.jpg"
    astronaut.resize((480, 360)).save(path, quality=95, exif=exif)
    return path


def _backdrop(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The installed console command (make setup installs the project into the venv)."""
    command = Path(sys.executable).parent / "backdrop"
    return subprocess.run([str(command), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_replace_on_white_subprocess(rotated_jpeg, tmp_path):
    out = tmp_path / "out.png"
    mask, cut = tmp_path / "mask.png", tmp_path / "cut.png"
    proc = _backdrop("replace", str(rotated_jpeg), "-o", str(out), "--background", "color:#ffffff", "--json",
                 "--save-mask", str(mask), "--save-cutout", str(cut))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["outputs"] == [str(out)] and report["mask"] == str(mask) and report["cutout"] == str(cut)
    assert Image.open(mask).mode == "L" and Image.open(cut).mode == "RGBA" and Image.open(cut).size == (360, 480)
    assert report["record"]["input_size"] == [360, 480] and report["request"]["version"] == SCHEMA_VERSION
    assert {"load", "segment", "composite", "save"} <= set(report["timings"])
    image = Image.open(out)
    assert image.size == (360, 480) and image.mode == "RGB"  # EXIF rotation applied
    pixels = np.asarray(image)
    white = (pixels == 255).all(axis=-1).mean()
    assert 0.2 < white < 0.8  # background replaced by white, the astronaut kept


def test_mask_command(rotated_jpeg, tmp_path):
    out = tmp_path / "mask.png"
    assert main(["mask", str(rotated_jpeg), "-o", str(out)]) == 0
    mask = Image.open(out)
    assert mask.mode == "L" and mask.size == (360, 480)
    values = np.asarray(mask)
    assert (values == 255).mean() > 0.2 and (values == 0).mean() > 0.2


def test_replace_with_mask_transparent(rotated_jpeg, tmp_path):
    mask = Image.new("L", (360, 480), 0)
    mask.paste(255, (100, 100, 260, 400))
    mask_path = tmp_path / "m.png"
    mask.save(mask_path)
    out = tmp_path / "cut.png"
    assert main(["replace", str(rotated_jpeg), "-o", str(out), "--mask", str(mask_path), "-b", "transparent"]) == 0
    cut = np.asarray(Image.open(out))
    assert cut.shape == (480, 360, 4) and (cut[..., 3] == np.asarray(mask)).all()


def test_variant_paths():
    assert [p.name for p in variant_paths("dir/out.png", 3)] == ["out.png", "out-2.png", "out-3.png"]


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


BAD_INPUTS = {
    "unreadable": (lambda p, t: str(t / "missing.jpg"), "does not exist"),
    "truncated": (lambda p, t: _write(t, "half.jpg", _jpeg(p)[: len(_jpeg(p)) // 2]), "truncated"),
    "text-renamed-jpg": (lambda p, t: _write(t, "notes.jpg", b"meeting notes\n" * 20), "not an image"),
    "empty-file": (lambda p, t: _write(t, "empty.jpg", b""), "empty"),
    "bomb": (lambda p, t: _write(t, "bomb.png", bomb_png(30000, 30000)), "megapixels"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_files(case, astronaut, tmp_path, capsys):
    make, message = BAD_INPUTS[case]
    source = make(astronaut, tmp_path)
    out = tmp_path / "out.png"
    assert main(["replace", source, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not out.exists()


@pytest.mark.parametrize(
    "mask, message",
    [(Image.new("L", (360, 480), 0), "empty"), (Image.new("L", (360, 480), 255), "whole image"),
     (Image.new("L", (480, 360), 255), "photo's size")],
    ids=["empty", "all-white", "size-mismatch"],
)
def test_bad_masks(mask, message, rotated_jpeg, tmp_path, capsys):
    mask_path = tmp_path / "mask.png"
    mask.save(mask_path)
    out = tmp_path / "out.png"
    assert main(["replace", str(rotated_jpeg), "-o", str(out), "--mask", str(mask_path)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [(["--steps", "0"], "--steps"), (["--steps", "ten"], "--steps"), (["--guidance", "nan"], "--guidance"),
     (["--control-scale", "3"], "--control-scale"), (["--variants", "0"], "--variants"), (["--seed", "-1"], "--seed"),
     (["--scheduler", "plms"], "--scheduler"), (["--background", "colour:#fff"], "unknown background"),
     (["--background", "color:#ffff"], "#RRGGBB"), (["--background", "image:"], "needs a path"),
     (["--segmenter", "no-such-model"], "unknown segmenter")],
)
def test_invalid_parameters(args, message, rotated_jpeg, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert _exit_code(["replace", str(rotated_jpeg), "-o", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _exit_code(argv: list[str]) -> int:
    """main()'s status; argparse's own usage errors leave through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_output_must_be_png_in_an_existing_folder(rotated_jpeg, tmp_path, capsys):
    assert main(["replace", str(rotated_jpeg), "-o", str(tmp_path / "out.jpg")]) == 2
    assert main(["replace", str(rotated_jpeg), "-o", str(tmp_path / "no" / "out.png")]) == 2
    err = capsys.readouterr().err
    assert ".png" in err and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_input_subprocess(tmp_path):
    source = _write(tmp_path, "photo.jpg", b"GIF89a but not really")
    out = tmp_path / "out.png"
    proc = _backdrop("replace", source, "-o", str(out))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not out.exists()


def test_replace_ai_with_local_model_folders(tiny_models, astronaut, tmp_path, capsys):
    """The AI path from the command line: tiny local models, two variants, JSON report."""
    photo = tmp_path / "photo.png"
    astronaut.resize((160, 120)).save(photo)
    out = tmp_path / "ai.png"
    code = main(["replace", str(photo), "-o", str(out), "-b", "ai", "--prompt", "a beach", "--steps", "1",
                 "--variants", "2", "--seed", "5", "--device", "cpu", "--json",
                 "--inpaint-model", tiny_models["inpaint"], "--controlnet-model", tiny_models["controlnet"],
                 "--depth-model", tiny_models["depth"]])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["outputs"] == [str(out), str(tmp_path / "ai-2.png")]
    assert {"depth", "generate"} <= set(report["timings"]) and report["device"] == "cpu"
    assert report["models"]["inpaint"]["revision"].startswith("local:")
    first, second = (np.asarray(Image.open(p)) for p in report["outputs"])
    assert first.shape == second.shape == (120, 160, 3) and not np.array_equal(first, second)


def test_missing_segmenter_weights(rotated_jpeg, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.setenv("REMBG_HOME", str(tmp_path))
    out = tmp_path / "out.png"
    assert main(["replace", str(rotated_jpeg), "-o", str(out), "--segmenter", "isnet-general-use"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "backdrop models fetch isnet-general-use" in err and "isnet-general-use" in err
    assert not out.exists()


def test_sampler_presets_set_scheduler_and_steps():
    from backdrop.cli import build_parser
    from backdrop.replace import request_from_args

    def request(*extra):
        return request_from_args(build_parser(full=False).parse_args(["replace", "in.jpg", "-o", "o.png", *extra]))

    assert (request()[0].scheduler, request()[0].steps) == ("dpmpp", 25)
    reference = request("--sampler-preset", "reference")[0]
    assert (reference.scheduler, reference.steps) == ("ddim", 42)
    assert request("--scheduler", "euler_a", "--steps", "9")[0].steps == 9


def test_batch_in_this_process(rotated_jpeg, astronaut, tmp_path, capsys):
    """Without Ray, `batch` runs the photos one after the other here; two photos with the same
    name get distinct outputs, a bad option writes nothing, a folder without photos is an error."""
    from storage import history

    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(rotated_jpeg.read_bytes())
    astronaut.resize((160, 120)).save(folder / "photo.png")
    assert main(["batch", str(folder), "-o", str(out), "--background", "gradient:#000000,#ffffff"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"2 of 2 photo(s) done in {out}" and "2/2" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["photo-png.png", "photo.png"]  # photo.jpg came first
    recorded = {v.results[0].path.read_bytes() for v in history.list_generations(limit=2)}
    assert {p.read_bytes() for p in out.iterdir()} == recorded
    assert _exit_code(["batch", str(folder), "-o", str(tmp_path / "none"), "--steps", "0"]) == 2
    assert "steps must be from 1 to 150" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main(["batch", str(out.parent / "missing"), "-o", str(out)]) == 2
    assert "is not a folder" in capsys.readouterr().err
