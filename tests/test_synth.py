"""GoPro-like synthetic blur: alignment, strength, determinism, the dataset layout and the command."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from deblurtool.commands.synth import synth
from deblurtool.errors import InputError, OutputError
from trainers.synth import SynthParams, content_rescale, make_dataset, synthesize

CLEAN = SynthParams(size=128, noise_max=0.0, jpeg_prob=0.0)
LINEAR_PAN = replace(CLEAN, n_min=9, n_max=9, curvature=0.0, shake=0.0, rotation=0.0, zoom=0.0)


def texture(h: int = 192, w: int = 224, seed: int = 0) -> np.ndarray:
    """A natural-ish HxWx3 uint8 image: smoothed noise at several scales, so it has every frequency."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w, 3), np.float64)
    for sigma in (0.7, 2.0, 6.0):
        acc += cv2.GaussianBlur(rng.standard_normal((h, w, 3)), (0, 0), sigma) * sigma
    acc = (acc - acc.min()) / (acc.max() - acc.min())
    return np.clip(acc * 255, 0, 255).astype(np.uint8)


def grey(rgb_u8: np.ndarray) -> np.ndarray:
    return rgb_u8.astype(np.float64).mean(axis=2)


def test_zero_motion_gives_the_sharp_image() -> None:
    img = texture()
    for gamma in (0.0, 1.0):
        blur, sharp, info = synthesize(
            img, np.random.default_rng(1), replace(CLEAN, blur_px=0.0, gamma=gamma)
        )
        assert info["blur_px"] == 0.0
        assert blur.shape == sharp.shape == (128, 128, 3)
        assert np.abs(blur.astype(int) - sharp.astype(int)).max() <= 1
        x0, y0 = info["crop_xy"]
        assert np.array_equal(sharp, img[y0 : y0 + 128, x0 : x0 + 128])  # target is the source, untouched


def test_zero_motion_with_noise_differs_only_by_noise() -> None:
    params = SynthParams(size=128, blur_px=0.0, jpeg_prob=0.0, noise_max=2 / 255)
    blur, sharp, info = synthesize(texture(), np.random.default_rng(3), params)
    diff = blur.astype(float) - sharp.astype(float)
    assert abs(diff.mean()) < 0.3
    assert diff.std() <= 255 * info["noise_sigma"] * 1.5 + 0.5


def centroid(rgb_u8: np.ndarray) -> tuple[float, float]:
    g = grey(rgb_u8)
    y, x = np.indices(g.shape)
    return float((g * x).sum() / g.sum()), float((g * y).sum() / g.sum())


def test_blur_is_centred_on_the_target() -> None:
    """A straight pan averaged symmetrically about the middle sub-frame leaves each point's centroid in place.

    (Phase correlation is no judge here: a box blur's transfer function changes sign, so its phase is not 0.)
    """
    dots = np.zeros((220, 260, 3), np.uint8)
    dots[[90, 110, 150], [100, 170, 130]] = 255
    for seed in range(4):
        params = replace(LINEAR_PAN, blur_px=14, gamma=0.0, crop_xy=(60, 50))
        blur, sharp, info = synthesize(dots, np.random.default_rng(seed), params)
        assert abs(info["blur_px"] - 14) < 0.05
        assert grey(blur).max() < 0.5 * grey(sharp).max()  # really spread out
        assert np.allclose(centroid(blur), centroid(sharp), atol=0.05)


def test_blur_strength_grows_with_extent() -> None:
    """High-frequency energy falls as the extent grows (dense sub-frames: with GoPro's 7-13, long blurs
    become separate ghost copies, as they do in GoPro, and fine texture can partly survive them)."""
    img = texture(256, 256)
    energies = []
    for length in (0.0, 3.0, 6.0, 12.0, 24.0, 40.0):
        params = replace(LINEAR_PAN, blur_px=length, crop_xy=(64, 64), n_min=41, n_max=41)
        blur, _, info = synthesize(img, np.random.default_rng(7), params)
        assert abs(info["blur_px"] - length) < 0.05
        energies.append(float(np.mean(cv2.Laplacian(grey(blur), cv2.CV_64F) ** 2)))
    assert all(a > b for a, b in itertools.pairwise(energies)), energies


def test_rotation_and_zoom_make_blur_vary_across_the_crop() -> None:
    params = replace(CLEAN, blur_px=10.0, rotation=3.0, zoom=2.0, size=128)
    _, _, info = synthesize(texture(400, 600), np.random.default_rng(11), params)
    corners = info["corner_blur_px"]
    assert max(corners) - min(corners) > 1.0


def test_linear_light_average_is_brighter() -> None:
    """Power-mean inequality: averaging x^2.2 then taking the 2.2th root never lands below the plain mean."""
    img = texture()
    direct, _, _ = synthesize(img, np.random.default_rng(5), replace(CLEAN, blur_px=20, gamma=0.0))
    linear, _, info = synthesize(img, np.random.default_rng(5), replace(CLEAN, blur_px=20, gamma=1.0))
    assert info["linear_light"]
    assert linear.astype(float).mean() > direct.astype(float).mean() + 0.5


def test_same_seed_same_pair_other_seed_other_pair() -> None:
    img, params = texture(), SynthParams(size=96)
    a = synthesize(img, np.random.default_rng(42), params)
    b = synthesize(img, np.random.default_rng(42), params)
    c = synthesize(img, np.random.default_rng(43), params)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])


def test_extent_distribution_spans_gopro() -> None:
    """Measured on GoPro (720p, textured pixels): median ~10 px, 10th/90th percentile ~3.5/20 px."""
    from trainers.synth.blur import draw_blur_px

    rng = np.random.default_rng(0)
    draws = np.array([draw_blur_px(rng, SynthParams()) for _ in range(4000)])
    p10, p50, p90 = np.percentile(draws, [10, 50, 90])
    assert p10 < 3.5 and 7 < p50 < 12 and p90 > 20
    assert np.mean(draws < 2) > 0.05  # near-sharp share: the model must learn to leave sharp content alone
    assert draws.max() <= SynthParams().blur_max_px


def test_content_rescale() -> None:
    assert content_rescale(np.zeros((1600, 2560, 3), np.uint8)).shape == (720, 1152, 3)
    assert content_rescale(np.zeros((500, 600, 3), np.uint8)).shape == (500, 600, 3)
    assert content_rescale(np.zeros((240, 320, 3), np.uint8)).shape == (256, 341, 3)


def make_sources(root: Path) -> Path:
    src = root / "src"
    (src / "stills").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(src / "stills" / f"img{i}.png"), texture(200 + 10 * i, 260, seed=i))
    with av.open(str(src / "clip.mp4"), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 288, 256, "yuv420p"
        base = texture(256 + 40, 288 + 40, seed=9)
        for k in range(40):
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(base[k : k + 256, k : k + 288]), format="rgb24"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return src


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_layout_split_and_determinism(tmp_path: Path) -> None:
    src = make_sources(tmp_path)
    params = SynthParams(size=128)
    kw = dict(seed=3, test_fraction=0.25, test_count=3, frames_per_video=4)
    m = make_dataset(src, tmp_path / "a", 12, params, **kw)
    out = tmp_path / "a"
    train_seqs = {p.name for p in (out / "train").iterdir()}
    test_seqs = {p.name for p in (out / "test").iterdir()}
    assert train_seqs and test_seqs and not train_seqs & test_seqs  # held-out files never train
    assert "clip" in train_seqs  # video frames are kept for training
    assert len(m["samples"]) == 15 and m["test_count"] == 3
    for split, seqs in (("train", train_seqs), ("test", test_seqs)):
        for seq in seqs:
            blurs = sorted(p.name for p in (out / split / seq / "blur").iterdir())
            assert blurs == sorted(p.name for p in (out / split / seq / "sharp").iterdir())
            assert blurs[0] == "000001.png"
            b = cv2.imread(str(out / split / seq / "blur" / blurs[0]))
            s = cv2.imread(str(out / split / seq / "sharp" / blurs[0]))
            assert b.shape == s.shape and min(b.shape[:2]) >= 128
    assert not list(out.rglob("*.tmp"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["source"] for r in manifest["samples"] if r["split"] == "test"} == set(manifest["test_sources"])

    make_dataset(src, tmp_path / "b", 12, params, workers=2, **kw)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")  # byte-identical, whatever the worker count


def test_dataset_refuses_to_overwrite_and_bad_input(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), texture())
    make_dataset(src, tmp_path / "out", 2, SynthParams(size=64), test_fraction=0)
    with pytest.raises(OutputError, match="overwrite"):
        make_dataset(src, tmp_path / "out", 2, SynthParams(size=64), test_fraction=0)
    make_dataset(src, tmp_path / "out", 1, SynthParams(size=64), test_fraction=0, overwrite=True)
    assert len(list((tmp_path / "out" / "train").rglob("*.png"))) == 2
    with pytest.raises(InputError):
        make_dataset(tmp_path / "missing", tmp_path / "o2", 2, SynthParams(size=64))
    with pytest.raises(OutputError):
        make_dataset(src, src / "inside", 2, SynthParams(size=64))
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    m = make_dataset(src, tmp_path / "o3", 4, SynthParams(size=64), test_fraction=0)
    assert [r["source"] for r in m["skipped"]] == [str(src / "broken.jpg")]
    assert len(list((tmp_path / "o3" / "train").rglob("*.png"))) == 8  # the readable source gave every pair


def test_unreadable_sources_are_skipped_and_a_failed_run_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad source costs its own pairs only (noted, exit 1); a run that dies half-way leaves no partial
    dataset, so the rerun needs no --overwrite."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"{i}.png"), texture(seed=i))
    _, buf = cv2.imencode(".png", texture(seed=5))
    (src / "truncated.png").write_bytes(buf.tobytes()[:200])  # a valid header, no pixels
    (src / "clip.mp4").write_bytes(b"\x00" * 64)
    app = typer.Typer()
    app.command()(synth)
    r = CliRunner().invoke(app, [str(src), str(tmp_path / "out"), "--count", "4", "--size", "64",
                                 "--test-fraction", "0"])  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "truncated.png" in r.stderr and "clip.mp4" in r.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {Path(x["source"]).name for x in manifest["skipped"]} == {"truncated.png", "clip.mp4"}
    assert all("error" not in x for x in manifest["samples"])

    import trainers.synth.dataset as ds

    def boom(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(ds, "_write_png", boom)
        with pytest.raises(OSError):
            make_dataset(src, tmp_path / "again", 4, SynthParams(size=64), test_fraction=0)
    assert not (tmp_path / "again").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again")]
    make_dataset(src, tmp_path / "again", 4, SynthParams(size=64), test_fraction=0)
    assert (tmp_path / "again" / "manifest.json").is_file()


def test_command(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(synth)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"{i}.png"), texture(seed=i))
    runner = CliRunner()
    args = [str(src), str(tmp_path / "out"), "--count", "3", "--size", "64", "--test-fraction", "0.5"]
    r = runner.invoke(app, [*args, "--test-count", "1"])
    assert r.exit_code == 0, r.output
    assert "wrote 3 train + 1 test pairs" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "overwrite" in r.output
    r = runner.invoke(app, [str(tmp_path / "nope"), str(tmp_path / "o")])
    assert r.exit_code == 2 and "nope" in r.output


def test_sources_read_like_the_rest_of_the_tool(tmp_path: Path) -> None:
    """Synth reads through the tool's own readers: images by bytes (any path encoding; cv2.imread fails on
    non-ASCII paths on some platforms, not on this Linux), video frames converted to RGB as `deblurtool video`
    converts them (swscale's direct path, which synth used before, darkens them by about a level)."""
    from deblurtool.media.colour import to_rgb_u8
    from trainers.synth.dataset import read_image_rgb, read_video_frames

    img = texture(64, 80, seed=2)
    path = tmp_path / "naïve café 写真.png"
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    assert np.array_equal(read_image_rgb(path), img[..., ::-1])
    src = make_sources(tmp_path)
    frames = read_video_frames(src / "clip.mp4", {0, 5})
    with av.open(str(src / "clip.mp4")) as container:
        decoded = [f for _, f in zip(range(6), container.decode(video=0), strict=False)]
    assert np.array_equal(frames[5], to_rgb_u8(decoded[5]))
    assert not np.array_equal(frames[5], decoded[5].to_ndarray(format="rgb24"))  # the biased path differs
