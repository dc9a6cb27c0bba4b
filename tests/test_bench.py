"""deblurtool bench: MAC counting, pair discovery, JSON of speed and quality runs (tiny nets and frames)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from deblurtool import bench
from deblurtool.commands.bench import bench as bench_command
from deblurtool.errors import InputError, WeightsError
from deblurtool.metrics import psnr, ssim
from deblurtool.models import weights as wmod
from deblurtool.models.generator import GeneratorConfig, ResnetGenerator
from deblurtool.pairs import find_pairs, read_pair

REPO = Path(__file__).resolve().parents[1]
CROPS = REPO / "tests" / "data" / "crops"
TINY = GeneratorConfig(ngf=4, n_blocks=1)


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)  # the test machine has 2 shared cores
    measure = bench.matmul_peak_tflops  # the real one times a 2048^2 matmul per dtype: too slow for tests
    monkeypatch.setattr(
        bench.speed, "matmul_peak_tflops", lambda device, dtype: measure(device, dtype, n=128, reps=1)
    )


def generator_macs(cfg: GeneratorConfig, n: int, h: int, w: int) -> int:
    """MACs of ResnetGenerator by hand: Cout * Cin * k * k * Hout * Wout per conv (its docstring's layout)."""
    g, c = cfg.ngf, cfg.in_channels
    hw = h * w
    total = g * c * 49 * hw  # 7x7 stem at full resolution
    total += 2 * g * g * 9 * hw // 4 + 4 * g * 2 * g * 9 * hw // 16  # two stride-2 3x3 convs
    total += cfg.n_blocks * 2 * (4 * g) ** 2 * 9 * hw // 16  # residual blocks at 1/4 resolution
    total += 2 * g * 4 * g * 9 * hw // 4 + g * 2 * g * 9 * hw  # 3x3 convs after each nearest upsampling
    total += c * g * 49 * hw  # 7x7 head
    return n * total


# --- MAC counting ---
def test_count_macs_matches_analytic_count_on_tiny_generator() -> None:
    model = ResnetGenerator(TINY).eval()
    assert bench.count_macs(model, torch.zeros(2, 3, 16, 24)) == generator_macs(TINY, 2, 16, 24)


def test_count_macs_full_generator() -> None:
    """The shipped ResNet-9 config; MACs scale with pixels, so a 1280x720 frame costs about 0.8 TMAC."""
    cfg = GeneratorConfig()
    macs = bench.count_macs(ResnetGenerator(cfg).eval(), torch.zeros(1, 3, 36, 64))
    assert macs == generator_macs(cfg, 1, 36, 64)
    assert 7.9e11 < macs * (720 * 1280) / (36 * 64) < 8.1e11


def test_count_macs_grouped_conv_transposed_conv_and_linear() -> None:
    net = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2),  # 8 * (4/2) * 9 * 5*6
        nn.ConvTranspose2d(8, 2, 2, stride=2),  # each of 8*5*6 inputs spread over 2*2*2 outputs
        nn.Flatten(),
        nn.Linear(2 * 10 * 12, 7),  # 7 * 240
    )
    expected = 3 * (8 * 2 * 9 * 30 + 8 * 30 * 2 * 4 + 7 * 240)
    assert bench.count_macs(net, torch.zeros(3, 4, 5, 6)) == expected


def test_time_variant_recounts_after_a_back_off() -> None:
    """A call that backs off (a failed big attempt, then a retry) is recounted: MACs of the settings kept."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    notes: list[str] = []

    def fake_deblur(rgb_u8: np.ndarray) -> np.ndarray:
        if not notes:
            conv(torch.zeros(8, 3, 16, 16))  # the attempt that "ran out of memory"
            notes.append("out of memory: retrying with batch_size 1")
        conv(torch.zeros(1, 3, 16, 16))
        return rgb_u8

    r = bench.time_variant(fake_deblur, np.zeros((16, 16, 3), np.uint8), torch.device("cpu"), 3, notes)
    assert r["macs"] == 4 * 3 * 9 * 16 * 16
    assert len(r["seconds"]) == 3 and r["median_s"] == sorted(r["seconds"])[1]


def test_speed_variants_full_and_quick() -> None:
    default = bench.Variant("bf16", 0, 0, 1, is_default=True)
    full = bench.speed_variants(default, ["fp32", "bf16"], quick=False)
    names = [v.name for v in full]
    assert names == ["fp32 plain loop", "bf16 whole", "fp32 whole", "bf16 256/32 b1", "bf16 512/32 b1"]
    assert [v.is_default for v in full] == [False, True, False, False, False]
    quick = bench.speed_variants(default, ["fp32", "bf16"], quick=True)
    assert [v.name for v in quick] == ["fp32 plain loop", "bf16 whole"]


def test_highest_gradient_box_finds_the_textured_region() -> None:
    img = np.full((100, 160, 3), 128, np.uint8)
    img[60:90, 110:150] = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    y0, x0, y1, x1 = bench.highest_gradient_box(img, size=40)
    assert (y1 - y0, x1 - x0) == (40, 40)
    assert y0 <= 60 and y1 >= 90 - 5 and x0 >= 100 and x1 <= 160
    assert bench.highest_gradient_box(img[:20, :30], size=40) == (0, 0, 20, 30)  # clipped to small images


# --- pair discovery ---
def _write(path: Path, h: int = 8, w: int = 12, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def _layout(root: Path, seqs: list[str], names: tuple[str, ...] = ("000001.png", "000002.png")) -> None:
    for seq in seqs:
        for sub in ("blur", "sharp"):
            for name in names:
                _write(root / seq / sub / name)


def test_find_pairs_plain_split_and_gopro_root(tmp_path: Path) -> None:
    _layout(tmp_path / "plain", [""])
    assert [p.name for p in find_pairs(tmp_path / "plain")] == ["000001", "000002"]
    _layout(tmp_path / "split", ["SEQ_B", "SEQ_A"])
    assert [p.name for p in find_pairs(tmp_path / "split")] == [
        "SEQ_A/000001", "SEQ_A/000002", "SEQ_B/000001", "SEQ_B/000002",
    ]  # fmt: skip
    _layout(tmp_path / "GOPRO_Large", ["test/GOPR1", "train/GOPR2"])
    pairs = find_pairs(tmp_path / "GOPRO_Large")
    assert [p.name for p in pairs] == ["GOPR1/000001", "GOPR1/000002"]  # the test split only
    assert pairs[0].blur == tmp_path / "GOPRO_Large" / "test" / "GOPR1" / "blur" / "000001.png"
    blur, sharp = read_pair(pairs[0])
    assert blur.shape == sharp.shape == (8, 12, 3) and blur.dtype == np.uint8


def test_find_pairs_real_samples_and_blur_gamma() -> None:
    pairs = find_pairs(REPO / "samples" / "gopro")
    assert [p.name for p in pairs] == ["GOPR0384_11_00/000001", "GOPR0396_11_00/000001"]
    gamma = find_pairs(REPO / "samples" / "gopro", blur_dir="blur_gamma")  # only one sequence has blur_gamma
    assert [p.name for p in gamma] == ["GOPR0396_11_00/000001"]


def test_find_pairs_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image pairs found"):
        find_pairs(tmp_path / "empty")
    _layout(tmp_path / "a", [""])
    _write(tmp_path / "a" / "blur" / "000003.png")
    with pytest.raises(InputError, match=r"000003\.png.*no sharp partner"):
        find_pairs(tmp_path / "a")
    _layout(tmp_path / "b", ["S"])
    _write(tmp_path / "b" / "S" / "sharp" / "000009.png")
    with pytest.raises(InputError, match=r"000009\.png.*no blurry partner"):
        find_pairs(tmp_path / "b")
    _layout(tmp_path / "c", [""])
    _write(tmp_path / "c" / "blur" / "000001.jpg")
    with pytest.raises(InputError, match="share the name"):
        find_pairs(tmp_path / "c")


def test_read_pair_errors(tmp_path: Path) -> None:
    _layout(tmp_path, [""])
    _write(tmp_path / "sharp" / "000002.png", h=10)
    (tmp_path / "blur" / "000001.png").write_bytes(b"not an image")
    first, second = find_pairs(tmp_path)
    with pytest.raises(InputError, match=r"blur/000001\.png.*cannot read"):
        read_pair(first)
    with pytest.raises(InputError, match=r"blur/000002\.png.*size 12x8 differs.*12x10"):
        read_pair(second)


# --- the command ---
def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(bench_command)
    return app


def _tiny_weights(path: Path, trained: bool = True) -> Path:
    torch.manual_seed(0)
    model = ResnetGenerator(TINY)
    if trained:  # a non-zero output conv: no longer the identity an untrained generator is
        nn.init.normal_(model.head.weight, std=0.01)
    wmod.save_generator(model, path)
    return path


@pytest.fixture
def no_default_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(wmod.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(wmod, "REPO_ROOT", tmp_path / "empty_repo")


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), args)
    return result.exit_code, result.output


def test_speed_run_json(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "speed.json"
    args = [
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--resolution",
        "64x48",
        "--runs",
        "2",
        "--engine",
        "torch",  # the PyTorch variants table (other engines: test_bench_engines_* below)
        "--json",
        str(out),
    ]
    code, output = _invoke(args)
    assert code == 0, output
    report = json.loads(out.read_text())
    speed = report["speed"]
    assert speed["fps"] > 0 and speed["resolution"] == [64, 48] and speed["runs"] == 2
    assert set(speed["default"]) == {"device", "precision", "tile_size", "tile_overlap", "batch_size"}
    assert speed["default"]["device"] == "cpu"
    rows = speed["variants"]
    assert rows[0]["name"] == "fp32 plain loop" and not rows[0]["fused"]
    assert sum(r["is_default"] for r in rows) == 1
    assert next(r for r in rows if r["is_default"])["fps"] == speed["fps"]
    assert {r["precision"] for r in rows} >= {"fp32", speed["default"]["precision"]}
    for r in rows:
        assert len(r["ms_runs"]) == 2 and r["ms_per_frame"] > 0 and r["peak_mem_mib"] > 0
        assert r["peak_tflops"] == speed["matmul_peak_tflops"][r["precision"]]
        # one tile covers a 64x48 frame whatever the tile setting: the same work as the whole frame
        assert r["tiles_per_frame"] == 1
        assert r["macs_per_frame"] == generator_macs(TINY, 1, 48, 64)
    assert report["weights"]["trained"] and report["weights"]["path"] == str(weights)
    for key in ("device", "device_name", "cpu_model", "torch", "threads", "date", "command"):
        assert key in report["system"]
    assert "quality" not in report


def test_speed_counts_tiling_overlap_and_padding(tmp_path: Path) -> None:
    """With 32-pixel tiles of overlap 8 a 40x60 frame runs as 2x3 tiles of 32x32: 6 tiles' worth of MACs."""
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "speed.json"
    args = ["--weights", str(weights), "--device", "cpu", "--precision", "fp32", "--resolution", "60x40",
            "--runs", "1", "--quick", "--tile-size", "32", "--tile-overlap", "8", "--engine", "torch",
            "--json", str(out)]  # fmt: skip
    code, output = _invoke(args)
    assert code == 0, output
    baseline, default = json.loads(out.read_text())["speed"]["variants"]
    assert baseline["macs_per_frame"] == generator_macs(TINY, 1, 40, 60)
    assert default["tiles_per_frame"] == 6
    assert default["macs_per_frame"] == generator_macs(TINY, 6, 32, 32)


def test_speed_without_shipped_weights_says_so(tmp_path: Path, no_default_weights: None) -> None:
    out = tmp_path / "speed.json"
    args = ["--device", "cpu", "--resolution", "32x32", "--runs", "1", "--quick", "--engine", "torch",
            "--json", str(out)]  # fmt: skip
    code, output = _invoke(args)
    assert code == 0, output
    assert "freshly initialised" in output
    report = json.loads(out.read_text())
    assert report["weights"]["trained"] is False and report["weights"]["path"] is None
    assert "freshly initialised" in report["weights"]["note"]
    # A fresh generator of the default model's architecture, counted like any model.
    from deblurtool.bench import count_macs
    from deblurtool.models import registry
    from deblurtool.models.weights import DEFAULT_MODEL

    assert report["weights"]["arch"] == DEFAULT_MODEL
    fresh = registry.build(DEFAULT_MODEL).eval()
    assert report["speed"]["variants"][0]["macs_per_frame"] == count_macs(fresh, torch.zeros(1, 3, 32, 32))


def test_quality_run_json_and_examples(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    out, examples = tmp_path / "quality.json", tmp_path / "examples"
    args = ["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed", "--data", str(CROPS),
            "--json", str(out), "--save-examples", str(examples)]  # fmt: skip
    code, output = _invoke(args)
    assert code == 0, output
    assert "26.42" in output  # the report's number is shown beside ours
    report = json.loads(out.read_text())
    assert "speed" not in report
    q = report["quality"]
    assert q["protocol"] == "full" and q["count"] == 2 and len(q["rows"]) == 2
    pairs = find_pairs(CROPS)
    blur, sharp = read_pair(pairs[0])
    assert q["rows"][0]["input_psnr"] == pytest.approx(psnr(blur, sharp))
    assert q["rows"][0]["input_ssim"] == pytest.approx(ssim(blur, sharp))
    assert q["input"]["psnr"] == pytest.approx(np.mean([r["input_psnr"] for r in q["rows"]]))
    for side in ("model", "input"):
        assert set(q[side]) == {"psnr", "ssim"} and 10 < q[side]["psnr"] < 50 and 0 < q[side]["ssim"] <= 1
    assert q["model"]["psnr"] != q["input"]["psnr"]  # the model did something (its head is not zero)
    strips = sorted(examples.glob("*.png"))
    assert [p.name for p in strips] == [
        "GOPR0410_11_00__000205_crop_full.png",
        "RealBlur_scene050__6_crop_full.png",
    ]
    strip = cv2.imread(str(strips[0]))
    assert strip.shape == (
        50,
        3 * 125 + 2 * 4,
        3,
    )  # blur | ours | sharp, 4-pixel gaps, crop clipped to 125x50
    # the examples are outputs: a second run refuses to replace them, unless --overwrite
    again = [a for a in args if a not in ("--json", str(out))]
    code, output = _invoke(again)
    assert code == 2 and "already exists" in output
    code, output = _invoke([*again, "--overwrite"])
    assert code == 0, output


def test_quality_resize_protocol(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "q.json"
    args = ["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed", "--data", str(CROPS),
            "--resize", "64", "--json", str(out)]  # fmt: skip
    code, output = _invoke(args)
    assert code == 0, output
    q = json.loads(out.read_text())["quality"]
    assert q["protocol"] == "resize64"
    assert all((r["width"], r["height"]) == (64, 64) for r in q["rows"])
    blur, sharp = read_pair(find_pairs(CROPS)[1])
    small = [cv2.resize(x, (64, 64), interpolation=cv2.INTER_AREA) for x in (blur, sharp)]
    assert q["rows"][1]["input_psnr"] == pytest.approx(psnr(*small))


def test_quality_refuses_without_trained_weights(tmp_path: Path, no_default_weights: None) -> None:
    code, output = _invoke(["--device", "cpu", "--metrics", "--no-speed", "--data", str(CROPS)])
    assert code == 2 and "trained weights" in output
    untrained = _tiny_weights(tmp_path / "untrained.safetensors", trained=False)
    code, output = _invoke(["--device", "cpu", "--metrics", "--no-speed", "--data", str(CROPS),
                            "--weights", str(untrained)])  # fmt: skip
    assert code == 2 and "untrained" in output


def test_load_model_refusals(no_default_weights: None) -> None:
    with pytest.raises(WeightsError, match="trained weights"):
        bench.load_model(None, allow_untrained=False)
    model, info = bench.load_model(None, allow_untrained=True)
    from deblurtool.models import registry
    from deblurtool.models.weights import DEFAULT_MODEL

    assert registry.arch_of(model) == DEFAULT_MODEL and info.trained is False  # the default's architecture


def test_missing_weights_named_by_the_environment_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(wmod.ENV_WEIGHTS, str(tmp_path / "missing.safetensors"))
    with pytest.raises(WeightsError, match=r"missing\.safetensors"):
        bench.load_model(None, allow_untrained=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-speed"], "nothing to do"),
        (["--data", "x"], "add --metrics"),
        (["--resolution", "720p"], "WIDTHxHEIGHT"),
        (["--metrics", "--resize", "30"], "multiple of 4"),
        (["--precision", "fp16", "--device", "cpu"], "fp16"),
    ],
)
def test_usage_errors(args: list[str], message: str, tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    defaults = [] if "--resolution" in args else ["--resolution", "16x16"]
    code, output = _invoke([*args, *defaults, "--weights", str(weights), "--runs", "1"])
    assert code == 2 and message in output


def test_existing_json_is_refused_before_measuring(tmp_path: Path) -> None:
    out = tmp_path / "exists.json"
    out.write_text("{}")
    code, output = _invoke(["--device", "cpu", "--json", str(out)])
    assert code == 2 and "already exists" in output
    assert out.read_text() == "{}"


def test_missing_data_folder_is_an_input_error(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    code, output = _invoke(["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed",
                            "--data", str(tmp_path / "nope")])  # fmt: skip
    assert code == 2 and "not found" in output


def test_registered_in_the_real_cli() -> None:
    from deblurtool.cli import app

    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0 and "--metrics" in result.output and "--no-speed" in result.output
    result = CliRunner().invoke(app, ["bench", "--no-speed"])
    assert result.exit_code == 2 and "nothing to do" in result.output


# --- temporal consistency ---


def _pan_pairs(root: Path, n: int = 4, step: int = 3) -> Path:
    """One sequence of ``n`` consecutive frames of a pan: crops of a wide texture, blurred along the pan."""
    from test_synth import texture

    wide = texture(72, 96 + n * step, seed=7)
    kernel = np.full((1, 5), 1 / 5, np.float32)
    for i in range(n):
        sharp = np.ascontiguousarray(wide[:, i * step : i * step + 96])
        blur = cv2.filter2D(sharp, -1, kernel, borderType=cv2.BORDER_REFLECT)
        for kind, img in (("blur", blur), ("sharp", sharp)):
            (root / "SEQ" / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "SEQ" / kind / f"{i:06d}.png"), img)
    return root


def test_metrics_on_consecutive_pairs_report_temporal_consistency(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    data, out = _pan_pairs(tmp_path / "pairs"), tmp_path / "t.json"
    code, output = _invoke(["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed",
                            "--data", str(data), "--json", str(out)])  # fmt: skip
    assert code == 0, output
    assert "Temporal consistency over 3 frame pairs" in output
    tc = json.loads(out.read_text())["temporal"]
    assert tc["pairs"] == 3 and [r["name"] for r in tc["rows"]] == ["SEQ"]
    assert set(tc["mean"]) == {"input", "output", "sharp", "valid"}
    assert all(0 <= tc["mean"][k] < 20 for k in ("input", "output", "sharp"))
    # the crops pairs are single frames: no temporal section
    code, output = _invoke(["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed",
                            "--data", str(CROPS), "--json", str(tmp_path / "c.json")])  # fmt: skip
    assert code == 0 and "temporal" not in json.loads((tmp_path / "c.json").read_text())


def test_metrics_on_a_video_clip_report_input_and_output_only(tmp_path: Path, video_factory) -> None:  # type: ignore[no-untyped-def]
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    spec = video_factory("clip.mp4", frames=5)
    out = tmp_path / "v.json"
    code, output = _invoke(["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed",
                            "--data", str(spec.path), "--clip-frames", "4", "--json", str(out)])  # fmt: skip
    assert code == 0, output
    report = json.loads(out.read_text())
    assert "quality" not in report
    tc = report["temporal"]
    assert tc["pairs"] == 3 and set(tc["mean"]) == {"input", "output", "valid"}
    code, output = _invoke(["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed",
                            "--data", str(spec.path), "--resize", "256"])  # fmt: skip
    assert code == 2 and "no sharp frames" in output


def test_bench_engines_times_openvino_beside_pytorch(tmp_path: Path) -> None:
    """The default engine on a CPU with OpenVINO: its rows beside PyTorch eager's, whole frame and tiles."""
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "speed.json"
    args = ["--weights", str(weights), "--device", "cpu", "--resolution", "40x24", "--runs", "1",
            "--engine", "openvino", "--json", str(out)]  # fmt: skip
    code, output = _invoke(args)
    assert code == 0, output
    rows = json.loads(out.read_text())["engines"]["rows"]
    names = [r["name"] for r in rows]
    assert names[0] == "torch fp32" and "openvino fp32" in names
    assert ("openvino int8" in names) == (importlib.util.find_spec("nncf") is not None)
    assert all(r["whole_ms"] > 0 and r["tiled_ms"] > 0 and "error" not in r for r in rows), rows
    assert "CPU engines" in output and "openvino fp32" in output


def test_bench_metrics_of_another_engine_are_scored_against_fp32(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "q.json"
    code, output = _invoke(["--weights", str(weights), "--device", "cpu", "--metrics", "--no-speed",
                            "--data", str(CROPS), "--engine", "openvino", "--precision", "bf16",
                            "--json", str(out)])  # fmt: skip
    assert code == 0, output
    q = json.loads(out.read_text())["quality"]
    assert q["settings"]["engine"] == "openvino" and q["settings"]["precision"] == "bf16"
    v = q["vs_fp32"]
    assert v["name"] == "openvino bf16" and len(v["rows"]) == q["count"] and v["mean_psnr_vs_fp32"] > 40
    for r, row in zip(v["rows"], q["rows"], strict=True):
        assert r["model_psnr"] == row["model_psnr"] and abs(r["model_psnr"] - r["fp32_psnr"]) < 0.05
    assert "against PyTorch fp32" in output


def test_bench_engine_names_are_checked() -> None:
    code, output = _invoke(["--engine", "tensorrt", "--device", "cpu"])
    assert code == 2 and "--engine must be auto, torch, openvino, all, or a list of" in output
    code, output = _invoke(["--engine", "all", "--precision", "bf16", "--device", "cpu"])
    assert code == 2 and "measures every precision" in output


# --- models side by side, the cache, the legends ---


def test_models_side_by_side_on_a_frame_and_a_video(tmp_path: Path, video_factory) -> None:  # type: ignore[no-untyped-def]
    """Two architectures in one run, each as video runs it; with --video, end to end over the clip."""
    from test_registry import tiny_nafunet

    resnet = _tiny_weights(tmp_path / "resnet.safetensors")
    naf = tmp_path / "naf.safetensors"
    wmod.save_generator(tiny_nafunet(seed=1), naf)
    spec = video_factory("clip.mp4", frames=3)
    out = tmp_path / "models.json"
    code, output = _invoke(["--weights", str(resnet), "--weights", str(naf), "--device", "cpu", "--engine",
                            "torch", "--resolution", "40x24", "--runs", "1", "--video", str(spec.path),
                            "--json", str(out)])  # fmt: skip
    assert code == 0, output
    m = json.loads(out.read_text())["models"]
    assert [r["name"] for r in m["rows"]] == ["resnet.safetensors", "naf.safetensors"]
    assert [r["weights"]["arch"] for r in m["rows"]] == ["resnet9", "nafunet"]
    for r in m["rows"]:
        assert (
            r["engine"] == "torch" and r["ms_per_frame"] > 0 and r["video_frames"] == 3 and r["video_s"] > 0
        )
    assert m["rows"][0]["speedup_vs_first"] == 1.0 and m["video"] == str(spec.path)
    assert "Models:" in output and "video fps" in output
    code, output = _invoke(["--weights", str(resnet), "--weights", str(naf), "--metrics", "--device", "cpu"])
    assert code == 2 and "compared on speed alone" in output


def test_unknown_model_name_lists_the_known_ones(tmp_path: Path) -> None:
    code, output = _invoke(["--model", "nope", "--device", "cpu"])
    assert code == 2 and "--model 'nope' is not a shipped model (known: " in output and "resnet9" in output


def test_bench_reuses_the_openvino_model_video_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OpenVINO model that a `video` run converted (and for int8 quantised) is the one bench times: the
    same cache entry, named by the weights file, not built again."""
    pytest.importorskip("openvino")
    from deblurtool.bench import engines as bench_engines
    from deblurtool.config import ModelSpec, RuntimeConfig
    from deblurtool.engines import openvino_runner
    from deblurtool.engines.cache import ENV_CACHE
    from deblurtool.inference import load_deblurrer

    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    weights = _tiny_weights(tmp_path / "tiny.safetensors")
    load_deblurrer(ModelSpec(weights=weights, runtime=RuntimeConfig("cpu", "fp32", "openvino")))  # as video
    converted: list[int] = []
    real = openvino_runner.convert
    monkeypatch.setattr(openvino_runner, "convert", lambda body: converted.append(1) or real(body))
    only = [bench_engines.EngineVariant("torch", "fp32"), bench_engines.EngineVariant("openvino", "fp32")]
    monkeypatch.setattr(bench_engines, "engine_variants", lambda engines: (only, []))
    out = tmp_path / "e.json"
    args = ["--weights", str(weights), "--device", "cpu", "--engine", "openvino", "--precision", "fp32"]
    code, output = _invoke([*args, "--resolution", "32x24", "--runs", "1", "--json", str(out)])
    assert code == 0, output
    assert [r["name"] for r in json.loads(out.read_text())["engines"]["rows"]] == [
        "torch fp32",
        "openvino fp32",
    ]
    assert converted == []


def test_legends_describe_only_the_columns_shown() -> None:
    from deblurtool.bench.report import engines_table, system_info
    from deblurtool.bench.results import EngineRow, EnginesReport

    sysinfo = system_info(torch.device("cpu"))
    row = EngineRow("openvino fp32", "openvino", "fp32", psnr_vs_fp32=60.0, psnr_vs_sharp=30.0)
    scored = EnginesReport((64, 48), 1, 1, 2, [row], [])
    caption = str(engines_table(scored, sysinfo).caption)
    assert "vs fp32 dB" in caption and "first s" not in caption and "256-pixel" not in caption
    timed = EnginesReport(
        (64, 48), 1, 1, 0, [EngineRow("torch fp32", "torch", "fp32", 0.1, 10.0, 0.1, 12.0)], []
    )
    caption = str(engines_table(timed, sysinfo).caption)
    assert "first s" in caption and "vs sharp" not in caption
