"""Hard to break (issue 12): every failure of an output, the data folder or the database is
``error: ...`` with exit status 2, nothing half-written, the generation failed with its cause and
earlier records intact. Real failures where the machine allows them: a small tmpfs filled to the
last byte, a read-only mount (skipped, saying why, where the tests may not mount one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError
from core.request import GenerationRequest
from storage import history, jobs, lifecycle, service
from storage.db import Database

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A fresh data folder for the command line (BACKDROP_DATA_DIR), SQLite."""
    folder = tmp_path / "data"
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(folder))
    monkeypatch.delenv("BACKDROP_DATABASE_URL", raising=False)
    return folder


def cli(capsys, *args) -> tuple[int, str, str]:
    from backdrop.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


LEMUR = Path(__file__).parent / "data" / "lemur" / "lemur.png"


def photo(path: Path, seed: int = 0, size=(170, 110)) -> Path:
    """The lemur (a subject the automatic mask finds) at ``size``, with a little noise so each
    seed gives other bytes (and files that do not compress away on a small disk)."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(Image.open(LEMUR).convert("RGB").resize(size), dtype=np.int16)
    noisy = np.clip(pixels + rng.integers(-6, 7, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path)
    return path


def recorded(folder: Path) -> list[history.GenerationView]:
    db = Database(None, folder)
    try:
        return history.list_generations(db=db)
    finally:
        db.dispose()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs of the given size (MiB) under tmp_path; skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size_mib: int, name: str = "mnt") -> Path:
        point = tmp_path / name
        point.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root (these tests are not root)")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): the real full-disk case needs one")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill the disk under ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    with open(folder / "filler2", "wb", buffering=0) as handle:  # the last partial block
        try:
            while True:
                handle.write(b"\0")
        except OSError:
            pass
    assert shutil.disk_usage(folder).free < 4096


# ---- item 2: outputs checked before anything runs; a failed write is a failed generation -----

def test_bad_output_paths_are_refused_before_anything_is_recorded(data, tmp_path, capsys):
    source = photo(tmp_path / "in.png")
    before = source.read_bytes()
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "sub").mkdir()
    cases = [
        (["-o", tmp_path / "folder.png"], "is a folder"),
        (["-o", tmp_path / "ok.png", "--save-mask", tmp_path / "folder.png"], "is a folder"),
        (["-o", source], "is an input of this command"),
        (["-o", tmp_path / "x.png", "--save-mask", tmp_path / "x.png"], "are the same file"),
        (["-o", tmp_path / "x.png", "--save-cutout", tmp_path / "sub" / ".." / "x.png"], "are the same file"),
        (["-o", tmp_path / "missing" / "x.png"], "does not exist"),
    ]
    for args, message in cases:
        code, out, err = cli(capsys, "replace", source, *args)
        assert code == 2 and err.startswith("error: ") and message in err, (args, err)
        assert "Traceback" not in err
    assert source.read_bytes() == before, "the input is never overwritten"
    assert recorded(data) == [], "nothing was recorded"
    assert not (tmp_path / "ok.png").exists() and not (tmp_path / "x.png").exists()


def test_output_write_failing_after_the_run_fails_the_generation(data, tmp_path, capsys, monkeypatch):
    """The output is staged before the generation is marked done: when writing it fails, the
    row is failed with the cause, and neither the result nor the mask is left behind."""
    from core.errors import OutputError
    from core.files import StagedFiles

    source = photo(tmp_path / "in.png", 1)
    calls = []
    real = StagedFiles.stage

    def failing_second(self, path, content):
        calls.append(path)
        if len(calls) == 2:
            self.discard()
            raise OutputError(f"cannot write {str(path)!r}: No space left on device")
        return real(self, path, content)

    monkeypatch.setattr(StagedFiles, "stage", failing_second)
    code, _, err = cli(capsys, "replace", source, "-o", tmp_path / "out.png", "--save-mask", tmp_path / "mask.png")
    assert code == 2 and "No space left on device" in err, err
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "mask.png").exists(), "nothing half-written"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left"
    [view] = recorded(data)
    assert view.status == "failed" and view.error.startswith("writing the outputs failed: cannot write")
    assert view.outputs == [], "a failed generation records no outputs"


def test_real_full_disk_for_the_output_fails_the_generation(data, tmp_path, capsys, tmpfs):
    out_dir = tmpfs(1, "out")
    source = photo(tmp_path / "in.png", 2, size=(400, 300))
    fill(out_dir)
    code, _, err = cli(capsys, "replace", source, "-o", out_dir / "out.png")
    assert code == 2 and err.startswith("error: ") and "No space left on device" in err, err
    assert not (out_dir / "out.png").exists() and not list(out_dir.glob(".*.tmp"))
    [view] = recorded(data)
    assert view.status == "failed" and "writing the outputs failed" in view.error


@pytest.mark.slow
def test_real_full_disk_for_the_data_folder(tmp_path, monkeypatch, capsys, tmpfs):
    """Filled to the last byte: replace fails plainly with its row failed (earlier ones intact),
    and history, show and delete still run thanks to the space reserve, so space can be freed."""
    folder = tmpfs(12) / "data"
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(folder))
    monkeypatch.delenv("BACKDROP_DATABASE_URL", raising=False)
    # pure noise does not compress: each 800x600 image takes more room than the 1 MiB reserve
    first = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(first)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((400, 600), 255, np.uint8), 100)).save(mask)
    assert cli(capsys, "replace", first, "--mask", mask, "-o", tmp_path / "a-out.png")[0] == 0
    assert (folder / "space.reserve").stat().st_size == 1024 * 1024
    close_databases()  # as after a command: no connection keeps SQLite's -wal and -shm files open
    fill(folder.parent)
    # the same photo (stored already) on another background: recorded, then its results find no room
    code, _, err = subprocess_cli("replace", first, "--mask", mask, "-o", tmp_path / "b-out.png", "-b", "transparent")
    assert code == 2 and "error: no space left on the disk of" in err and "Traceback" not in err, err
    assert "nothing was changed" not in err and "generation 2 is recorded as failed" in err, err
    assert not (tmp_path / "b-out.png").exists()
    code, out, err = subprocess_cli("history", "--json")
    assert code == 0, err
    import json

    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[1]["status"] == "done", "earlier records intact"
    assert rows[2]["status"] == "failed" and "no space left" in rows[2]["error"]
    assert subprocess_cli("show", 1)[0] == 0
    code, out, err = subprocess_cli("delete", 1)
    assert code == 0 and "deleted generation 1" in out, err
    assert shutil.disk_usage(folder).free > 100_000, "deleting freed space"


def close_databases() -> None:
    """Forget this process's open databases (the command line's are per process)."""
    from storage.db import _databases

    for db in list(_databases.values()):
        db.dispose()
    _databases.clear()


def subprocess_cli(*args) -> tuple[int, str, str]:
    """A fresh process: nothing cached from earlier commands (engines, the reserve's state)."""
    proc = subprocess.run([str(Path(sys.executable).parent / "backdrop"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout, proc.stderr


# ---- items 4 and 5: the data folder and the database --------------------------------------

def test_data_folder_that_is_a_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(tmp_path / "afile"))
    code, _, err = cli(capsys, "history")
    assert code == 2 and "is a file, not a folder" in err


def test_empty_database_is_never_silently_a_new_one(data, tmp_path, capsys):
    assert cli(capsys, "replace", photo(tmp_path / "a.png"), "-o", tmp_path / "a-out.png")[0] == 0
    close_databases()
    (data / "backdrop.db").write_bytes(b"")  # truncated, e.g. by a crash of a copy
    for args in (["history"], ["replace", tmp_path / "a.png", "-o", tmp_path / "b.png"]):
        code, _, err = cli(capsys, *args)
        assert code == 2 and "is empty (0 bytes)" in err and "restore it from a backup" in err.lower(), err
    assert (data / "backdrop.db").stat().st_size == 0, "left as it was"
    code, out, _ = cli(capsys, "doctor")
    assert code == 2 and "PROBLEM: the database" in out and "empty (0 bytes)" in out
    (data / "backdrop.db").unlink()  # the database gone, the images still there
    close_databases()
    code, _, err = cli(capsys, "history")
    assert code == 2 and "holds stored images but no database" in err


def _damage(path: Path, table: str = "generations") -> None:
    """Overwrite the header of ``table``'s root page: SQLite reads it as malformed."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = connection.execute("PRAGMA page_size").fetchone()[0]
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    connection.close()
    with open(path, "r+b") as handle:
        handle.seek((root - 1) * page)
        handle.write(b"\x99" * 8)


def test_damaged_database_is_an_error_and_doctor_says_what_to_do(data, tmp_path, capsys):
    assert cli(capsys, "replace", photo(tmp_path / "a.png"), "-o", tmp_path / "a-out.png")[0] == 0
    close_databases()
    _damage(data / "backdrop.db")
    damaged = (data / "backdrop.db").read_bytes()
    code, _, err = cli(capsys, "history")
    assert code == 2 and "is damaged (database disk image is malformed" in err and "backdrop doctor" in err, err
    code, out, _ = cli(capsys, "doctor")
    assert code == 2 and "PROBLEM: the database" in out and "backdrop doctor --salvage" in out
    assert (data / "backdrop.db").read_bytes() == damaged, "neither repaired nor replaced behind the user's back"
    (data / "backdrop.db").write_bytes(os.urandom(8192))  # not a database at all
    close_databases()
    code, _, err = cli(capsys, "show", 1)
    assert code == 2 and "file is not a database" in err
    code, out, _ = cli(capsys, "doctor")
    assert code == 2 and "is not a SQLite database" in out


def test_read_only_data_folder_reads_and_refuses_to_record(tmp_path, monkeypatch, capsys, tmpfs):
    mount = tmpfs(16)
    folder = mount / "data"
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(folder))
    monkeypatch.delenv("BACKDROP_DATABASE_URL", raising=False)
    assert cli(capsys, "replace", photo(tmp_path / "a.png"), "-o", tmp_path / "a-out.png")[0] == 0
    close_databases()
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    code, out, err = subprocess_cli("history")
    assert code == 0 and " done " in out, err
    code, _, err = subprocess_cli("replace", tmp_path / "a.png", "-o", tmp_path / "b-out.png")
    assert code == 2 and "error: cannot write to" in err and "read-only" in err.lower() and "Traceback" not in err, err
    assert not (tmp_path / "b-out.png").exists()


def test_unreachable_postgresql_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BACKDROP_DATABASE_URL", f"postgresql+psycopg://nobody@/backdrop?host={tmp_path}&port=1")
    code, _, err = cli(capsys, "history")
    assert code == 2 and err.startswith("error: cannot use the database server at") and "Traceback" not in err


# ---- item 3: a killed replace, cancel -------------------------------------------------------

HANGING_REPLACE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import core.pipeline
from core.errors import Cancelled

def hang(image, request, progress=None, cancel=None, **kw):
    progress("generate", 1, 100)
    while True:
        time.sleep(0.05)
        if cancel():
            raise Cancelled("cancelled at step 1")

core.pipeline.run = hang
from backdrop.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _running(folder: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            views = recorded(folder)
        except Exception:
            views = []
        if views and views[0].status == "running" and views[0].progress_step == 1:
            return views[0].id
        time.sleep(0.1)
    raise AssertionError("the replace never started running")


def _killed_while_running(args: list[str], data: Path) -> int:
    """Start a replace, SIGKILL it once its generation runs; that generation's id."""
    killed = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        return _running(data)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)


@pytest.mark.slow
def test_killed_replace_is_recovered_and_cancel_stops_a_live_one(data, tmp_path, capsys, monkeypatch):
    source = photo(tmp_path / "in.png", 5)
    args = [sys.executable, "-c", HANGING_REPLACE, str(ROOT), "replace", str(source), "-o", str(tmp_path / "o.png")]
    gid = _killed_while_running(args, data)
    # another process's worker, alive all along, recovers it (it looks again while idle)
    monkeypatch.setattr(jobs, "RECOVER_EVERY", 0.2)
    worker = jobs.Worker(jobs.JobQueue(Database(None, data)), poll_interval=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while recorded(data)[0].status == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop(10)
    view = recorded(data)[0]
    assert view.id == gid and view.status == "failed" and view.error == lifecycle.INTERRUPTED

    # a second one killed, with no worker anywhere: the next command recovers it
    second = _killed_while_running(args, data)
    code, out, _ = cli(capsys, "show", second)
    assert code == 0 and out.startswith(f"generation {second}: failed") and lifecycle.INTERRUPTED in out
    assert cli(capsys, "delete", second)[0] == 0

    # a live one: `backdrop cancel` asks it to stop, and it does
    live = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        third = _running(data)
        code, out, _ = cli(capsys, "cancel", third)
        assert code == 0 and "asked to stop" in out
        assert live.wait(60) == 2
        assert "error: cancelled" in live.stderr.read()
    finally:
        live.kill()
        live.wait(10)
    assert recorded(data)[0].status == "cancelled"
    code, _, err = cli(capsys, "cancel", third)
    assert code == 2 and "already ended (cancelled" in err


# ---- item 6: export ---------------------------------------------------------------------------

def test_export_writes_only_ordinary_files_in_existing_folders(data, tmp_path, capsys):
    assert cli(capsys, "replace", photo(tmp_path / "a.png"), "-o", tmp_path / "a-out.png")[0] == 0
    fifo = tmp_path / "pipe.zip"
    os.mkfifo(fifo)
    (tmp_path / "folder.zip").mkdir()
    for target, message in ((fifo, "is not an ordinary file"), (tmp_path / "folder.zip", "is a folder"),
                            (tmp_path / "new" / "e.zip", "does not exist")):
        code, _, err = cli(capsys, "export", 1, "-o", target)
        assert code == 2 and message in err and "Traceback" not in err, err
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not (tmp_path / "new").exists()
    assert cli(capsys, "export", 1, "-o", tmp_path / "e.zip")[0] == 0
    with zipfile.ZipFile(tmp_path / "e.zip") as archive:
        assert "records.json" in archive.namelist()
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "e.zip").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "a-out.png").stat().st_mode) == expected, "zips and PNGs alike"


# ---- item 7: the parent deleted while its re-run runs ----------------------------------------

def test_rerun_whose_parent_is_deleted_meanwhile_still_writes_its_output(data, tmp_path, capsys, monkeypatch):
    assert cli(capsys, "replace", photo(tmp_path / "a.png", 6), "-o", tmp_path / "a-out.png")[0] == 0
    import core.pipeline

    real = core.pipeline.run

    def delete_parent_midway(image, request, **kw):
        assert cli_inner("delete", 1) == 0
        return real(image, request, **kw)

    def cli_inner(*args) -> int:
        from backdrop.cli import main

        return main([str(a) for a in args])

    monkeypatch.setattr(core.pipeline, "run", delete_parent_midway)
    code, out, err = cli(capsys, "rerun", 1, "-o", tmp_path / "again.png")
    assert code == 0, err
    assert "was deleted while this ran" in out and (tmp_path / "again.png").exists()
    [child] = recorded(data)
    assert child.status == "done" and child.parent_id is None


# ---- items 9, 10, 11 --------------------------------------------------------------------------

def test_batch_zip_names_are_plain_file_names(tmp_path):
    db = Database(None, tmp_path / "data")
    fake = lambda image, request, **kw: service_result(image)  # noqa: E731
    done = []
    for name in ("..\\..\\x.png", "C:\\Users\\me\\IMG_1.JPG", "../../etc/y.png", "\x00.png"):
        gid, _ = service.generate_and_record(photo(tmp_path / "p.png"), GenerationRequest(), db=db, run=fake)
        done.append((name, history.get(gid, db=db)))
    with zipfile.ZipFile(__import__("io").BytesIO(history.results_zip(done))) as archive:
        names = archive.namelist()
    assert names[:3] == ["x.png", "IMG_1.png", "y.png"] and names[3] in ("_.png",)
    assert not any("\\" in n or "/" in n or n.startswith(".") for n in names)
    db.dispose()


def service_result(image):
    from core.pipeline import GenerationResult

    return GenerationResult(images=[image.convert("RGB")], mask=Image.new("L", image.size, 255),
                            cutout=image.convert("RGBA"), timings={"composite": 0.0})


def test_nul_in_any_text_field_is_refused_before_the_database():
    for field in ("prompt", "negative_prompt", "inpaint_model"):
        with pytest.raises(InputError, match="must not contain a NUL character"):
            GenerationRequest(**{field: "a\x00b"})
    with pytest.raises(InputError, match="NUL"):
        GenerationRequest.from_dict({**GenerationRequest().to_dict(), "prompt": "x\x00"})


def test_smaller_items(data, tmp_path, capsys):
    code, _, err = cli(capsys, "history", "--background", "plasma")
    assert code == 2 and "invalid choice: 'plasma'" in err
    source = photo(tmp_path / "a.png")
    code, _, err = cli(capsys, "replace", source, "-o", tmp_path / "v.png", "--variants", "3", "-b", "color:#ff0000")
    assert code == 2 and "only the AI background makes variants" in err and recorded(data) == []
    assert GenerationRequest(background="blur", variants=3).variants == 1, "what is stored is what is made"
    assert cli(capsys, "replace", source, "-o", tmp_path / "a-out.png")[0] == 0
    # `show 1 | head`: the reader goes away; no traceback, the shell's status for SIGPIPE
    proc = subprocess.Popen([str(Path(sys.executable).parent / "backdrop"), "show", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)
    proc.stdout.close()
    assert proc.wait(60) == 141 and proc.stderr.read() == b""


@pytest.mark.slow
def test_bounded_shadows_match_full_resolution_ones(monkeypatch):
    """Shadows are computed at SHADOW_SIDE at most: at 2400x1800 they stay within a few levels
    of the full-resolution computation (the timing is in bench/shadow_bench.py)."""
    from core.look import shadows

    alpha = Image.new("L", (2400, 1800), 0)
    from PIL import ImageDraw

    ImageDraw.Draw(alpha).ellipse((800, 400, 1600, 1500), fill=255)
    background = Image.new("RGB", alpha.size, (200, 210, 220))
    request = GenerationRequest(contact_shadow=0.7, cast_shadow=0.6, shadow_angle=120)
    bounded = np.asarray(shadows.apply_shadows(background, alpha, request), dtype=int)
    monkeypatch.setattr(shadows, "SHADOW_SIDE", 10_000)
    full = np.asarray(shadows.apply_shadows(background, alpha, request), dtype=int)
    difference = np.abs(bounded - full)
    assert full.min() < 120, "a real shadow to compare"
    assert difference.mean() < 0.5 and np.percentile(difference, 99.9) <= 8, (difference.mean(), difference.max())


# ---- issue 18: refused before anything is recorded; what is printed; messages that are true --------

def test_input_the_run_would_fail_on_is_refused_before_anything_is_recorded(data, tmp_path, capsys):
    """A 20000x20 strip (its automatic mask is empty) and an unknown segmenter left failed rows;
    now `error:`, exit 2, nothing recorded, as for every other bad input."""
    strip = tmp_path / "strip.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (20, 20000, 3), dtype=np.uint8)).save(strip)
    code, _, err = cli(capsys, "replace", strip, "-o", tmp_path / "out.png")
    assert code == 2 and err.startswith("error: mask is empty"), err
    code, _, err = cli(capsys, "replace", photo(tmp_path / "in.png", 7), "-o", tmp_path / "out.png",
                       "--segmenter", "no-such-model")
    assert code == 2 and err.startswith("error: unknown segmenter 'no-such-model'"), err
    assert recorded(data) == [] and not (tmp_path / "out.png").exists()


def test_stored_text_is_printed_with_control_characters_escaped(data, tmp_path, capsys):
    """A prompt holding terminal escapes (set the window title, clear the screen; C1's CSI) is
    stored as typed and printed escaped by `history` and `show`, to whoever reads them."""
    hostile = "\x1b]0;owned\x07\x1b[2J\x9b31m\rover"
    assert cli(capsys, "replace", photo(tmp_path / "in.png", 8), "-o", tmp_path / "out.png", "--prompt", hostile,
               "--negative-prompt", "tab\there")[0] == 0
    [view] = recorded(data)
    assert view.prompt == hostile, "stored as typed"
    for args in (("history",), ("show", view.id), ("history", "--json"), ("show", view.id, "--json")):
        code, out, err = cli(capsys, *args)
        assert code == 0, err
        assert not any(c in out for c in "\x1b\x07\x9b\r\t"), (args, out)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\rover" in cli(capsys, "show", view.id)[1]


def test_history_search_without_a_match_says_so(data, tmp_path, capsys):
    code, _, err = cli(capsys, "history")
    assert code == 0 and err.strip() == "no generations recorded"
    assert cli(capsys, "replace", photo(tmp_path / "in.png", 9), "-o", tmp_path / "out.png", "--prompt", "a lemur")[0] == 0
    code, out, err = cli(capsys, "history", "--search", "marble")
    assert code == 0 and out == "" and err.strip() == "no generations match these filters (1 recorded)", err
    code, _, err = cli(capsys, "history", "--offset", str(2**64))
    assert code == 2 and "--offset" in err, err


def _many_generations(data: Path, count: int) -> None:
    """``count`` generations recorded through the storage layer (rows only: the same small photo)."""
    db = Database(None, data)
    try:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
        for i in range(count):
            history.create(GenerationRequest(prompt=f"generation number {i} " + "on a marble table " * 8), image, db=db)
    finally:
        db.dispose()


@pytest.mark.slow
def test_damaged_database_refuses_writes_and_doctor_salvages_it(data, tmp_path, capsys):
    """4 KB overwritten inside the file (not its first page): `replace` wrote into it four times
    before; now every command refuses it with `error:` and what to do, and leaves it as it was.
    `backdrop doctor --salvage OUT.db` (Python's sqlite3: Debian's sqlite3 3.40 `.recover` fails)
    copies every readable row into a new database that Backdrop then opens."""
    _many_generations(data, 400)
    with sqlite3.connect(data / "backdrop.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    size = (data / "backdrop.db").stat().st_size
    with open(data / "backdrop.db", "r+b") as handle:
        handle.seek(size // 2 // 4096 * 4096 + 1000)
        handle.write(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    damaged = (data / "backdrop.db").read_bytes()
    for args in (["replace", photo(tmp_path / "a.png"), "-o", tmp_path / "a-out.png"], ["history", "--limit", "1"]):
        close_databases()
        code, _, err = cli(capsys, *args)
        assert code == 2 and err.startswith(f"error: the database {data / 'backdrop.db'} is damaged"), err
        assert "will not write into it" in err and "backdrop doctor --salvage" in err, err
    assert not (tmp_path / "a-out.png").exists()
    assert (data / "backdrop.db").read_bytes() == damaged, "nothing written into it"
    code, out, _ = cli(capsys, "doctor")
    assert code == 2 and "PROBLEM: the database" in out and "backdrop doctor --salvage" in out, out

    salvaged = tmp_path / "salvaged.db"
    code, out, err = cli(capsys, "doctor", "--salvage", salvaged)
    assert code == 0, err
    assert "generations:" in out and "rows" in out, out
    with sqlite3.connect(salvaged) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = [row[0] for row in connection.execute("SELECT id FROM generations ORDER BY id")]
    connection.close()
    assert 300 <= len(ids) < 400 and ids[0] == 1 and ids[-1] == 400, (len(ids), ids[:3], ids[-3:])
    assert (data / "backdrop.db").read_bytes() == damaged, "the damaged file is left as it was"
    code, _, err = cli(capsys, "doctor", "--salvage", salvaged)
    assert code == 2 and "already exists" in err

    for name in ("backdrop.db", "backdrop.db-wal", "backdrop.db-shm"):  # as doctor says: move it away, put the copy in
        if (data / name).exists():
            (data / name).rename(tmp_path / f"{name}.damaged")
    salvaged.rename(data / "backdrop.db")
    close_databases()
    code, out, err = cli(capsys, "history", "--json", "--limit", "1000")
    assert code == 0 and len(json.loads(out)) == len(ids), err
    assert cli(capsys, "replace", photo(tmp_path / "b.png", 3), "-o", tmp_path / "b-out.png")[0] == 0
    code, out, _ = cli(capsys, "doctor")
    assert "integrity check ok" in out
