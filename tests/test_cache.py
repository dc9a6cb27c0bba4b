"""The model cache only ever deletes what it wrote: `deblurtool cache clear` refuses a folder holding anything
else (a $DEBLURTOOL_CACHE pointed at photos), says what it removed, and a run never caches into, prunes or
deletes in such a folder; a cache written before the marker existed still works and clears."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deblurtool.cli import app
from deblurtool.engines import cache as cache_mod
from deblurtool.fsutil import temp_name

KEY = {"kind": "compiled", "shape": [1, 3, 8, 8]}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv(cache_mod.ENV_CACHE, str(where))
    return where


def _user_files(where: Path) -> dict[str, bytes]:
    """A folder of someone's files: photos, a video, notes, an album folder."""
    where.mkdir(parents=True, exist_ok=True)
    files = {
        "IMG_0001.jpg": b"\xff\xd8\xff\xe0 a photo",
        "compiled-holiday.jpg": b"\xff\xd8\xff\xe0 another photo",
        "clip.mp4": b"\x00\x00\x00\x18ftypmp42 a video",
        "notes.txt": b"my notes\n",
        "album/IMG_0002.jpg": b"\xff\xd8 a photo in a folder",
    }
    for name, data in files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(data)
    return files


def _snapshot(where: Path) -> dict[str, bytes]:
    return {p.relative_to(where).as_posix(): p.read_bytes() for p in where.rglob("*") if p.is_file()}


def _write(kind: str, n: int) -> Path:
    key = {**KEY, "kind": kind, "n": n}
    path = cache_mod.entry_path(kind, key)
    cache_mod.write_entry(path, key, {"blob": b"x" * (1000 + n)}, pytest.fail)
    return path


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["cache", *args])
    return result.exit_code, result.stdout, result.stderr


def test_clear_refuses_a_folder_of_user_files_and_deletes_nothing(folder: Path) -> None:
    files = _user_files(folder)
    code, out, err = _cli("clear")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "not a deblurtool cache folder" in err and "nothing was removed" in err
    assert _snapshot(folder) == files
    code, out, _ = _cli("show")
    assert code == 0 and "not a deblurtool cache folder" in out and _snapshot(folder) == files


def test_a_run_never_caches_prunes_or_deletes_in_a_folder_of_user_files(folder: Path) -> None:
    files = _user_files(folder)
    # An "entry" there that is not one (its name fits the layout, its bytes do not): read, not deleted.
    lookalike = cache_mod.entry_path("compiled", KEY)
    lookalike.write_bytes(b"someone's file")
    files[lookalike.name] = b"someone's file"
    warned: list[str] = []
    assert cache_mod.read_entry(lookalike, KEY, warned.append) is None
    cache_mod.write_entry(cache_mod.entry_path("model", KEY), KEY, {"xml": b"<x/>"}, warned.append)
    assert cache_mod.prune("compiled", 0) == 0
    assert _snapshot(folder) == files  # no entry, no marker, nothing deleted
    assert any("not a deblurtool cache folder" in w for w in warned), warned
    assert _cli("clear")[0] == 2 and _snapshot(folder) == files


def test_clear_removes_only_its_entries_and_says_what(folder: Path) -> None:
    entries = [_write("compiled", 1), _write("compiled", 2), _write("model", 3)]
    assert (folder / cache_mod.MARKER).read_text().startswith(cache_mod.MARKER_SIGNATURE)
    stale = temp_name(entries[0])  # an entry a killed run was writing: nobody holds its lock
    stale.write_bytes(b"half")
    code, out, _ = _cli("show")
    assert code == 0 and "3 entries" in out and "1 unfinished" in out
    code, out, err = _cli("clear")
    assert code == 0, err
    assert out.startswith("cache: removed 3 entries (") and "2 compiled, 1 model" in out, out
    assert "1 unfinished file(s) of stopped runs" in out and str(folder) in out
    assert sorted(os.listdir(folder)) == [cache_mod.MARKER]  # the marker stays
    code, out, _ = _cli("clear")
    assert code == 0 and out.startswith("cache: nothing to remove")


def test_a_cache_holding_one_foreign_file_is_refused_whole(folder: Path) -> None:
    entry = _write("model", 1)
    (folder / "notes.txt").write_text("mine")
    code, _, err = _cli("clear")
    assert code == 2 and "'notes.txt'" in err
    assert entry.exists() and (folder / "notes.txt").read_text() == "mine"


def test_links_and_folders_in_the_cache_are_never_followed_or_deleted(folder: Path, tmp_path: Path) -> None:
    _write("model", 1)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "a.jpg").write_bytes(b"photo")
    (folder / "link").symlink_to(precious, target_is_directory=True)
    assert _cli("clear")[0] == 2
    assert (precious / "a.jpg").read_bytes() == b"photo" and (folder / "link").is_symlink()


def test_a_cache_written_before_the_marker_still_works_and_clears(folder: Path) -> None:
    entries = [_write("compiled", 1), _write("model", 2)]
    (folder / cache_mod.MARKER).unlink()  # as an earlier version left it: entries only
    assert cache_mod.read_entry(entries[0], {**KEY, "n": 1}, pytest.fail) is not None
    code, out, _ = _cli("clear")
    assert code == 0 and "removed 2 entries" in out and os.listdir(folder) == []
    _write("model", 3)  # an empty folder becomes the cache: marked on the first write
    assert (folder / cache_mod.MARKER).is_file()


def test_prune_keeps_the_newest_of_a_kind(folder: Path) -> None:
    old, new = _write("compiled", 1), _write("compiled", 2)
    model = _write("model", 3)
    os.utime(old, (1, 1))
    assert cache_mod.prune("compiled", 1) == 1
    assert not old.exists() and new.exists() and model.exists()


def test_another_tool_s_cache_tag_is_not_ours(folder: Path) -> None:
    folder.mkdir()
    tag = folder / cache_mod.MARKER
    tag.write_text(f"{cache_mod.MARKER_SIGNATURE}\n# created by some other tool\n")
    (folder / "data.bin").write_bytes(b"theirs")
    assert _cli("clear")[0] == 2 and tag.exists() and (folder / "data.bin").exists()


def test_an_openvino_run_with_the_cache_pointed_at_user_files_leaves_them_all(
    folder: Path, tmp_path: Path, tiny_default: Path
) -> None:
    pytest.importorskip("openvino")
    from conftest import make_image, run_cli, save_image

    files = _user_files(folder)
    for i in range(14):  # more than the compiled sizes kept: pruning must not take them for entries
        (folder / f"compiled-{i:02d}.jpg").write_bytes(b"\xff\xd8\xff photo %d" % i)
        files[f"compiled-{i:02d}.jpg"] = b"\xff\xd8\xff photo %d" % i
    save_image(tmp_path / "in" / "a.png", make_image("u8_rgb", height=24, width=32))
    code, output = run_cli(
        "folder",
        tmp_path / "in",
        tmp_path / "out",
        "--engine",
        "openvino",
        "--precision",
        "fp32",
        "--no-progress",
    )
    assert code == 0, output
    assert "not a deblurtool cache folder" in output
    assert _snapshot(folder) == files
