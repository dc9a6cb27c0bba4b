"""One bench run from one config: load the model(s), time, score, write the JSON report.

``deblurtool bench`` is :func:`run_bench` of a :class:`BenchConfig` plus printing its tables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from deblurtool import devices
from deblurtool.bench.engines import BENCH_ENGINES, Fp32Reference, run_engines
from deblurtool.bench.models import run_models
from deblurtool.bench.quality import run_quality
from deblurtool.bench.report import check_writable, system_info, write_json
from deblurtool.bench.results import BenchReport, QualitySettings, WeightsInfo
from deblurtool.bench.speed import run_speed
from deblurtool.bench.temporal import Triple, is_clip, read_clip, run_temporal_clip, run_temporal_sequences
from deblurtool.config import ENGINES, RuntimeConfig, TileConfig
from deblurtool.engines.select import changes_nothing, choose_engine, residual_module
from deblurtool.errors import DeblurError, InputError, WeightsError
from deblurtool.evaluate import PairScore
from deblurtool.inference import Deblurrer
from deblurtool.models import registry
from deblurtool.models import weights as wmod
from deblurtool.pairs import find_pairs

log = logging.getLogger(__name__)

# The two genuine GoPro pairs shipped with the repository (not with the wheel: there --data is needed).
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples" / "gopro"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. ``resolution`` is (width, height) of the frame timed for speed; ``tile`` None uses the
    device's default for each frame size; ``weights`` the generator files (none: the shipped default; two or
    more, or a ``video``: the models side by side, :mod:`.models`); ``data`` None the shipped sample pairs;
    ``resize`` 0 scores full frames; ``json_out`` and ``save_examples`` are outputs (refused if they exist,
    unless ``overwrite``)."""

    device: str = "auto"
    precision: str = "auto"
    resolution: tuple[int, int] = (1280, 720)
    runs: int = 3
    quick: bool = False
    tile: TileConfig | None = None
    weights: tuple[Path, ...] = ()
    metrics: bool = False
    speed: bool = True
    data: Path | None = None
    resize: int = 0
    save_examples: Path | None = None
    json_out: Path | None = None
    overwrite: bool = False
    clip_frames: int = 0
    engine: str = "auto"
    video: Path | None = None

    @property
    def comparing(self) -> bool:
        """Models side by side: several weights files, or a video to run end to end."""
        return len(self.weights) > 1 or self.video is not None

    def __post_init__(self) -> None:
        names = self.engine.split(",")
        if self.engine not in ENGINES and not set(names) <= set(BENCH_ENGINES):
            raise DeblurError(
                f"--engine must be {', '.join(ENGINES)}, all, or a list of {','.join(BENCH_ENGINES[:-1])}; "
                f"got {self.engine!r}"
            )
        if self.engine not in ENGINES and (self.resize or self.save_examples or self.precision != "auto"):
            raise DeblurError(f"--engine {self.engine} measures every precision, at full resolution")
        if not self.metrics and (self.data is not None or self.resize or self.save_examples is not None):
            raise DeblurError("--data, --resize and --save-examples belong to quality: add --metrics")
        if not self.speed and not self.metrics:
            raise DeblurError("nothing to do: --no-speed skips speed, add --metrics to score quality")
        if self.data is not None and self.data.is_file() and (self.resize or self.save_examples):
            raise DeblurError(
                "a clip (--data VIDEO) has no sharp frames: --resize and --save-examples need pairs"
            )
        if self.comparing and (self.metrics or self.engine not in ENGINES or not self.speed):
            raise DeblurError(
                "several models (or --video) are compared on speed alone, each at one engine: drop "
                "--metrics, --no-speed and --engine all or lists"
            )
        if self.video is not None and not self.video.is_file():
            raise InputError("not found (--video needs a video file)", self.video)
        if self.resize and (self.resize < 16 or self.resize % 4):
            raise DeblurError(f"--resize must be 0 or a multiple of 4 of at least 16, got {self.resize}")


def _label(path: Path) -> str:
    """A shipped model's name (``deblurtool-<name>.safetensors``), else the file's name."""
    name = path.name
    if path.parent.resolve() == wmod.weights_dir().resolve() and name.startswith(wmod.MODEL_PREFIX):
        return name.removeprefix(wmod.MODEL_PREFIX).removesuffix(wmod.MODEL_SUFFIX)
    return name


def load_model(weights: Path | None, *, allow_untrained: bool) -> tuple[nn.Module, WeightsInfo]:
    """The generator to measure and a description of it for the report.

    ``weights`` None: the shipped default (or ``$DEBLURTOOL_WEIGHTS``). If none is shipped and
    ``allow_untrained`` (speed, which does not depend on weight values), a freshly initialised generator of
    the default model's architecture, and the report says so.
    Quality (``allow_untrained`` False) refuses missing defaults and generators that change nothing.
    """
    if weights is None:
        try:
            path = wmod.default_weights_path()
        except WeightsError as e:
            # A $DEBLURTOOL_WEIGHTS naming a missing file is the user's mistake: never time something else.
            if not allow_untrained or os.environ.get(wmod.ENV_WEIGHTS, "").strip():
                raise WeightsError(f"quality is only measured on trained weights: {e}") from None
            note = (
                "no trained weights shipped: timing a freshly initialised generator of the default "
                "architecture (speed does not depend on weight values)"
            )
            arch = wmod.DEFAULT_MODEL if wmod.DEFAULT_MODEL in registry.ARCHS else registry.LEGACY_ARCH
            model = registry.build(arch).eval()
            info = WeightsInfo(None, False, arch, registry.parameter_count(model), note=note)
            return model, info
        model = wmod.load_generator(None)
    else:
        path = Path(weights)
        model = wmod.load_generator(path)
    trained = not changes_nothing(residual_module(model), registry.input_multiple(model))
    if not trained and not allow_untrained:
        raise WeightsError(
            "this generator changes nothing (its correction is zero everywhere: untrained or all-zero "
            "weights); refusing to score it",
            path,
        )
    config: Any = model.config
    info = WeightsInfo(
        path=str(path),
        trained=trained,
        arch=registry.arch_of(model),
        parameters=registry.parameter_count(model),
        sha256=wmod.file_sha256(path),
        config=config.to_dict(),
    )
    return model, info


def run_bench(config: BenchConfig, say: Callable[[str], None] = log.info) -> BenchReport:
    """Measure what ``config`` asks for and return the report (also written to ``config.json_out`` if
    given). ``say`` hears one line per step ("timing ...", "scored ...") and notes as they come."""
    check_writable(config.json_out, overwrite=config.overwrite)
    table = config.engine not in ENGINES  # all, or a list: the engines table alone
    engine = "auto" if table else config.engine
    runtime = RuntimeConfig(config.device, config.precision, engine)  # validates the spellings
    dev = devices.resolve_device(runtime.device)
    choice = choose_engine(runtime.engine, runtime.precision, dev)
    width, height = config.resolution
    report = BenchReport(system=system_info(dev))

    def done() -> BenchReport:
        if config.json_out is not None:
            write_json(config.json_out, report, overwrite=config.overwrite)
        return report

    if config.comparing:
        models = []
        for file in config.weights or (wmod.default_weights_path(),):
            _, info = load_model(file, allow_untrained=True)
            models.append((_label(file), file, info))
        report.models = run_models(
            models, runtime=replace(runtime, device=str(dev)), tile=config.tile, resolution=(width, height),
            runs=config.runs, video=config.video, say=say,
        )  # fmt: skip
        return done()

    weights = config.weights[0] if config.weights else None
    model, report.weights = load_model(weights, allow_untrained=not config.metrics)
    if report.weights.note:
        say(f"note: {report.weights.note}")
    # Named by its file (when it has one) so an OpenVINO model compiled or quantised here is the same cache
    # entry as the one ``video`` and ``folder`` use, and the other way round.
    path = Path(report.weights.path) if report.weights.path else None
    if table or (config.speed and choice.engine != "torch"):
        # The engines asked for, or the chosen one beside PyTorch eager, as users run them.
        root = config.data if config.data is not None else SAMPLES_DIR
        pairs = find_pairs(root) if config.metrics and table else None
        which = config.engine if table else f"torch,{choice.engine}"
        report.engines = run_engines(
            model, weights_path=path, engines=which, resolution=(width, height), runs=config.runs,
            speed=config.speed, pairs=pairs, say=say,
        )  # fmt: skip
        if table or not config.metrics:
            return done()
    elif config.speed:
        report.speed = run_speed(
            model, device=dev, default_tile=config.tile or devices.default_tile_config(dev, (height, width)),
            precision=choice.precision, resolution=(width, height), runs=config.runs, quick=config.quick,
            on_variant=lambda v: say(f"timing {v.name} ..."),
        )  # fmt: skip
    if config.metrics:
        _quality(config, report, model, runtime=replace(runtime, device=str(dev)), path=path, say=say)
    return done()


def _quality(
    config: BenchConfig,
    report: BenchReport,
    model: nn.Module,
    *,
    runtime: RuntimeConfig,
    path: Path | None,
    say: Callable[[str], None],
) -> None:
    """``--metrics``: quality on pairs (and temporal consistency of their sequences), or temporal
    consistency alone on a clip; filled into ``report``."""
    root = config.data if config.data is not None else SAMPLES_DIR
    if config.data is None and not root.is_dir():
        raise InputError("the sample pairs are not installed here; pass --data DIR", root)
    deblurrer = Deblurrer.from_model(model, config.tile, runtime, weights_path=path)
    if is_clip(root):  # no ground truth: temporal consistency only
        frames = read_clip(root, limit=config.clip_frames)
        say(f"deblurring {len(frames)} frames of {root} ...")
        report.temporal = run_temporal_clip(deblurrer.deblur_array, frames, name=root.name)
        report.temporal.data = str(root)
        return
    pairs = find_pairs(root)
    sequences: dict[str, list[Triple]] = {}
    # Any engine or precision but PyTorch fp32 is also scored against PyTorch fp32's output.
    reference = None
    if (deblurrer.engine, deblurrer.precision) != ("torch", "fp32"):
        reference = Fp32Reference(model, config.tile)

    def keep(s: PairScore) -> None:  # consecutive frames of a sequence: measured for flicker below
        seq = s.pair.name.rpartition("/")[0]
        sequences.setdefault(seq, []).append((s.blur_rgb_u8, s.out_rgb_u8, s.sharp_rgb_u8))
        if reference is not None:
            reference.score(s)

    quality = run_quality(
        deblurrer.deblur_array, pairs, resize=config.resize, examples_dir=config.save_examples,
        overwrite=config.overwrite, on_row=lambda r: say(f"scored {r.name} ({r.seconds:.1f} s)"),
        on_scored=keep,
    )  # fmt: skip
    quality.data = str(root)
    if reference is not None:
        quality.vs_fp32 = reference.summary(f"{deblurrer.engine} {deblurrer.precision}")
    temporal = run_temporal_sequences(sequences)
    if temporal is not None:
        temporal.data = str(root)
        report.temporal = temporal
    last = deblurrer.tile  # the device default picks per frame size: these are the last frame's
    quality.settings = QualitySettings(
        device=str(deblurrer.device),
        engine=deblurrer.engine,
        precision=deblurrer.precision,
        tile_given=config.tile is not None,
        tile_size=last.tile_size,
        tile_overlap=last.tile_overlap,
        batch_size=last.batch_size,
    )
    report.quality = quality
