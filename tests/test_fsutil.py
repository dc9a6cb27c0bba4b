"""fsutil: the one temp-then-rename writer and the clean-up of temporary files whose writer is gone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deblurtool.errors import OutputError
from deblurtool.fsutil import (
    atomic_write,
    is_temp_of,
    lock_path,
    output_lock,
    remove_stale_temps,
    remove_stale_temps_under,
    temp_name,
    write_bytes,
)


def test_finished_file_appears_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out.mp4"
    with atomic_write(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.mp4.")
        assert tmp.name.endswith(".tmp.mp4") and is_temp_of(tmp, "out.mp4")  # encoders see .mp4
        assert not final.exists()
        tmp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole" and os.listdir(tmp_path) == ["out.mp4"]
    with pytest.raises(RuntimeError), atomic_write(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert final.read_bytes() == b"whole" and os.listdir(tmp_path) == ["out.mp4"]


def test_mode_is_the_umask_s_and_errors_name_the_output(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_bytes(tmp_path / "a.json", b"{}", fsync=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    with pytest.raises(OutputError, match=r"missing/a\.json: cannot write"):
        write_bytes(tmp_path / "missing" / "a.json", b"{}")


def test_temp_names_are_recognised_exactly() -> None:
    tmp = temp_name(Path("/x/v.1.mp4"))
    assert is_temp_of(tmp, "v.1.mp4") and not is_temp_of(tmp, "v.mp4") and not is_temp_of(tmp, "v.1.mkv")
    assert tmp.name.startswith(".v.1.mp4.") and tmp.name.endswith(".tmp.mp4")
    assert temp_name(Path("/x/v.1.mp4")) != tmp  # a new token each time
    assert is_temp_of(Path(".a.png.123.tmp.png"), "a.png")  # written by deblurtool 0.1
    assert is_temp_of(Path(".a.png.123.0badcafe.tmp.png"), "a.png")  # written by deblurtool 0.2
    for other in (".a.png.tmp", ".a.png.x.tmp.png", "a.png.1.tmp.png", ".a.png.1.tmp.jpg"):
        assert not is_temp_of(Path(other), "a.png"), other


@pytest.mark.parametrize(
    "name", ["a" * 251 + ".png", "é" * 125 + ".mp4", "x" * 255, "n" * 200 + "." + "s" * 54]
)
def test_temp_and_lock_names_of_the_longest_legal_names_fit(tmp_path: Path, name: str) -> None:
    final = tmp_path / name
    assert len(os.fsencode(name)) >= 254
    tmp = temp_name(final)
    assert len(os.fsencode(tmp.name)) <= 255 and is_temp_of(tmp, name)
    assert not is_temp_of(tmp, name[:-1] + "b") and not is_temp_of(temp_name(tmp_path / "other.png"), name)
    if len(name) < 255 and Path(name).suffix in (".png", ".mp4"):
        assert tmp.name.endswith(f".tmp{Path(name).suffix}")  # the format stays readable from the name
    write_bytes(final, b"whole")
    assert final.read_bytes() == b"whole" and os.listdir(tmp_path) == [name]
    with output_lock(final) as lock:
        assert len(os.fsencode(lock.name)) <= 255 and lock.name.endswith(".deblurtool.lock")
        with pytest.raises(OutputError, match="another deblurtool job"), output_lock(final):
            pass
    # Another long name with the same first 240 bytes gets its own lock and temporary names.
    twin = tmp_path / (name[:-5] + "z" + name[-4:])
    assert lock_path(twin) != lock_path(final) and not is_temp_of(temp_name(final), twin.name)


def test_stale_temps_of_long_names_are_found(tmp_path: Path) -> None:
    name = "v" * 251 + ".mp4"
    final = tmp_path / name
    dead = temp_name(final)
    dead.write_bytes(b"half")
    assert remove_stale_temps(tmp_path / ("v" * 250 + "w.mp4")) == 0 and dead.exists()
    assert remove_stale_temps(final) == 1 and not dead.exists()
    dead = temp_name(final)
    dead.write_bytes(b"half")
    assert remove_stale_temps_under(tmp_path) == 1 and not dead.exists()


_WRITER = """
import sys, time
from pathlib import Path
from deblurtool.fsutil import atomic_write
with atomic_write(Path(sys.argv[1])) as tmp:
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_stale_temps_of_gone_writers_go_those_of_live_ones_stay(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "img.png"
    final.parent.mkdir()
    dead = final.with_name(".img.png.1.tmp.png")  # pid 1 is alive, but no process holds this file's lock
    dead.write_bytes(b"half")
    other = tmp_path / ".notes.txt.99.0badcafe.tmp.txt"
    other.write_bytes(b"half")
    foreign = tmp_path / ".img.png.tmp"  # not our naming: never touched
    foreign.write_bytes(b"theirs")
    live = subprocess.Popen([sys.executable, "-c", _WRITER, str(final)], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None
        writing = Path(live.stdout.readline().strip())
        assert remove_stale_temps(final) == 1
        assert not dead.exists() and writing.exists() and other.exists()
        assert remove_stale_temps_under(tmp_path) == 1
        assert not other.exists() and writing.exists() and foreign.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temps(final) == 1 and not writing.exists()  # its writer was killed: now stale


_LOCKER = """
import sys, time
from pathlib import Path
from deblurtool.fsutil import output_lock
with output_lock(Path(sys.argv[1])) as lock:
    print(lock, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_output_lock_refuses_a_second_job_and_goes_stale_with_its_holder(tmp_path: Path, kind: str) -> None:
    target = tmp_path / ("out.mp4" if kind == "file" else "out")
    if kind == "folder":
        target.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _LOCKER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        lock = Path(holder.stdout.readline().strip())
        assert lock == (
            target / ".deblurtool.lock" if kind == "folder" else tmp_path / ".out.mp4.deblurtool.lock"
        )
        assert lock.read_text().split()[0] == str(holder.pid)
        with pytest.raises(OutputError) as info, output_lock(target):
            pass
        assert str(info.value) == (
            f"{target}: another deblurtool job (pid {holder.pid}) is writing to this output; "
            "wait for it to finish or choose another"
        )
    finally:
        holder.kill()
        holder.wait()
    assert lock.exists()  # killed: its lock file stays, but nobody holds it any more
    with output_lock(target) as mine:
        assert mine == lock and lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()
