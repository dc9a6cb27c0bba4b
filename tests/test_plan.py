"""The job planner (deblurtool.pipeline.plan) and the local runner that consumes it: one scan, one open of a
video before work, counts that add up, GIFs named, a progress count that moves during a video, and the
layering (nothing under pipeline/ or scale/ imports from commands/)."""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import IdentityModel, JobReport, make_image, make_video, run_cli, save_image

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, OutputError
from deblurtool.pipeline import Outcome, plan_folder, plan_video, run_folder, run_local
from deblurtool.pipeline import plan as plan_mod

ROOT = Path(__file__).resolve().parents[1] / "deblurtool"


class _Counting(JobReport):
    """A Progress that records, besides notes and failures, the totals announced and the advances made."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: list[int | None] = []
        self.advances = 0

    @contextmanager
    def items(self, label: str, total: int | None) -> Iterator[Callable[[], None]]:
        self.totals.append(total)

        def advance() -> None:
            self.advances += 1

        yield advance


def _mixed(src: Path) -> None:
    """Three images, one video of 6 frames, a broken link named like an image, a GIF and a text file."""
    for i in range(3):
        save_image(src / f"{i}.png", make_image("u8_rgb", seed=i))
    (src / "sub").mkdir()
    make_video(src / "sub" / "clip.mp4", frames=6)
    (src / "gone.jpg").symlink_to(src / "nowhere.jpg")
    (src / "anim.gif").write_bytes(b"GIF89a")
    (src / "notes.txt").write_text("x")


def test_folder_counts_add_up_and_gifs_are_named(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    _mixed(src)
    report = _Counting()
    summary = run_folder(src, dst, IdentityModel(), progress=report)
    assert (summary.images, summary.videos) == (4, 1)  # the broken link is an image that failed
    assert (summary.done, summary.skipped, len(summary.failed)) == (4, 0, 1)
    assert summary.done + summary.skipped + len(summary.failed) == summary.inputs == 5
    assert summary.line().startswith("4 image(s), 1 video(s): 4 done, 0 skipped, 1 failed")
    assert "2 other file(s) ignored" in summary.line()
    assert [n for n in report.notes if "GIF" in n] == [
        f"note: 1 GIF(s) not deblurred by `folder` ({src / 'anim.gif'}); "
        "`deblurtool video IN.gif OUT.mp4` deblurs one"
    ]
    again = run_folder(src, dst, IdentityModel(), progress=False)
    assert (again.done, again.skipped_done, len(again.failed)) == (0, 4, 1)
    assert again.done + again.skipped + len(again.failed) == again.inputs


def test_an_unlistable_folder_is_counted_in_the_inputs(tmp_path: Path, ordinary_user: Callable) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    save_image(src / "locked" / "b.png", make_image("u8_rgb"))
    os.chmod(src / "locked", 0)
    try:
        with ordinary_user():
            summary = run_folder(src, dst, IdentityModel(), progress=False)
    finally:
        os.chmod(src / "locked", 0o755)
    assert summary.line().startswith(
        "1 image(s), 0 video(s), 1 unreadable folder(s): 1 done, 0 skipped, 1 failed"
    )
    assert summary.done + summary.skipped + len(summary.failed) == summary.inputs == 2


def test_progress_counts_frames_so_it_moves_while_a_video_runs(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    _mixed(src)
    report = _Counting()
    run_folder(src, dst, IdentityModel(), progress=report)
    assert report.totals == [3 + 6]  # one count for the job: 3 images and the video's 6 frames
    assert report.advances == 3 + 6  # one step per image and per frame of the video (not 1 for the video)


def test_a_folder_is_scanned_once_and_a_video_opened_once_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_default: Path
) -> None:
    from deblurtool.media import video_reader

    src, dst = tmp_path / "in", tmp_path / "out"
    _mixed(src)
    scans: list[Path] = []
    real_scan = plan_mod.scan_folder
    monkeypatch.setattr(plan_mod, "scan_folder", lambda s, d: scans.append(s) or real_scan(s, d))
    code, output = run_cli("folder", src, dst, "--no-progress")  # the command: checks, then the run
    assert code == 1 and "4 done" in output, output
    assert scans == [src]

    opened: list[Path] = []
    real_init = video_reader.VideoReader.__init__

    def counting_init(self: object, path: Path, *args: object, **kwargs: object) -> None:
        opened.append(path)
        real_init(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(video_reader.VideoReader, "__init__", counting_init)
    video = make_video(tmp_path / "v.mp4", frames=3).path
    with plan_video(video, tmp_path / "v_out.mp4", EncodeConfig()) as plan:
        assert opened == [video]  # the check and the probe: one open
        assert plan.probes[Path("v.mp4")] is not None
        run_local(plan, IdentityModel(), signature="s", overwrite=False, progress=_Counting())
    assert opened == [video, video]  # and one for the work itself


def test_units_skip_what_the_manifest_records_and_the_outcomes_are_typed(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_image(src / f"{i}.png", make_image("u8_rgb", seed=i))
    run_folder(src, dst, IdentityModel(), progress=False, signature="A")
    (dst / "extra.png").parent.mkdir(exist_ok=True)
    save_image(src / "extra.png", make_image("u8_rgb", seed=5))
    save_image(dst / "extra.png", make_image("u8_rgb", seed=6))  # in the way, no record
    with plan_folder(src, dst) as plan:
        units = plan.units("A", overwrite=False)
        assert units == []
        assert (plan.summary.skipped_done, plan.summary.skipped_existing) == (2, 1)
    with plan_folder(src, dst) as plan:
        assert [u.rel.name for u in plan.units("B", overwrite=False)] == ["0.png", "1.png"]
    assert {o.value for o in Outcome} == {"done", "skipped_done", "skipped_existing", "failed"}


def test_a_long_video_is_cut_into_frame_ranges_only_when_asked(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    make_video(src / "long.mp4", frames=30, gop=5)
    with plan_folder(src, dst) as plan:
        (whole,) = plan.units("s", overwrite=False)
        assert whole.kind == "video" and whole.frames == 30
    with plan_folder(src, dst) as plan:
        chunks = plan.units("s", overwrite=False, cut=True, chunk_frames=10)
        assert [u.kind for u in chunks] == ["chunk"] * 3 and sum(u.frames for u in chunks) == 30


@pytest.mark.parametrize(
    ("name", "encode", "words"),
    [
        ("o.png", EncodeConfig(), "cannot write a video in .png files"),
        ("o.xyz", EncodeConfig(), "no container FFmpeg knows"),
        ("o.mp4", EncodeConfig(crf=60), "--crf for libx264 must be at most 51, got 60"),
        ("o.mp4", EncodeConfig(pix_fmt="rgba"), "--pix-fmt rgba is not supported by libx264"),
    ],
)
def test_video_output_name_and_encoder_are_checked_in_the_plan(
    tmp_path: Path, name: str, encode: EncodeConfig, words: str
) -> None:
    video = make_video(tmp_path / "in.mp4", frames=2, audio=False).path
    with (
        pytest.raises(DeblurError, match=words.replace("(", r"\(").replace(")", r"\)")),
        plan_video(video, tmp_path / "out" / name, encode),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # not even the folder it made


def test_a_folder_with_videos_refuses_a_crf_their_encoder_has_not(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    make_video(src / "a.mp4", frames=2, audio=False)
    with pytest.raises(DeblurError, match="at most 51"), plan_folder(src, dst, EncodeConfig(crf=60)):
        pass
    with plan_folder(src, dst, EncodeConfig(crf=60, codec="libvpx-vp9")) as plan:  # VP9 goes to 63
        assert plan.has_videos


def test_a_locked_output_is_refused_by_the_plan(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    with (
        plan_folder(src, dst),
        pytest.raises(OutputError, match="another deblurtool job"),
        plan_folder(src, dst),
    ):
        pass


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any level (also inside functions: those run too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("package", ["pipeline", "scale"])
def test_nothing_below_commands_imports_from_it(package: str) -> None:
    for path in sorted((ROOT / package).glob("*.py")):
        bad = sorted(
            n for n in _imports(path) if n == "deblurtool.commands" or n.startswith("deblurtool.commands.")
        )
        assert bad == [], (path.name, bad)
