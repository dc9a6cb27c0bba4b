"""What a run leaves in its folder besides checkpoints: config.json, metrics.csv, the curves, the exports.

    RUN/config.json          the resolved TrainConfig
    RUN/metrics.csv          one row per epoch, ``EpochRow`` (losses, lr, PSNR/SSIM, the blurry input's own
                             scores, extras, the sharp-input check, the selection score)
    RUN/{loss,psnr,ssim}.png curves per epoch
    RUN/last.safetensors     generator after the latest epoch   } ``deblurtool folder --weights FILE``
    RUN/best.safetensors     best epoch by the --select score   }

Every file is written to a temporary name beside it and renamed (only rank 0 writes).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from deblurtool.errors import OutputError
from deblurtool.fsutil import write_bytes
from deblurtool.models.generator import ResnetGenerator
from trainers.checkpoint import load_checkpoint


@dataclass(frozen=True)
class EpochScores:
    """What the evaluation after an epoch measured (dB and SSIM; None where that part did not run)."""

    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float
    select_score: float
    extra_psnr: float | None = None
    extra_ssim: float | None = None
    extra_input_psnr: float | None = None
    extra_input_ssim: float | None = None
    sharp_min_psnr: float | None = None
    sharp_mean_psnr: float | None = None


@dataclass(frozen=True)
class EpochRow:
    """One finished epoch: one row of metrics.csv, written from these typed values (never read back to
    decide anything)."""

    epoch: int
    step: int
    wall_s: float
    lr: float
    losses: Mapping[str, float]  # LOSS_KEYS of trainers.train: epoch means
    scores: EpochScores

    def csv_fields(self) -> dict[str, str]:
        row = {"epoch": str(self.epoch), "step": str(self.step), "wall_s": f"{self.wall_s:.1f}"}
        row["lr"] = f"{self.lr:.6g}"
        row |= {k: f"{v:.6g}" for k, v in self.losses.items()}
        for f in fields(EpochScores):
            v = getattr(self.scores, f.name)
            row[f.name] = "" if v is None else f"{v:{_FORMATS.get(f.name, '.4f')}}"
        return row


_FORMATS = {"ssim": ".5f", "input_ssim": ".5f", "extra_ssim": ".5f", "extra_input_ssim": ".5f"}
_FORMATS |= {"sharp_min_psnr": ".3f", "sharp_mean_psnr": ".3f"}
METRIC_COLUMNS = (
    "epoch", "step", "wall_s", "lr", "g_loss", "g_adv", "g_perceptual", "g_pixel", "g_freq", "d_loss",
    "w_dist", "psnr", "ssim", "input_psnr", "input_ssim", "extra_psnr", "extra_ssim", "extra_input_psnr",
    "extra_input_ssim", "sharp_min_psnr", "sharp_mean_psnr", "select_score",
)  # fmt: skip
RUN_OUTPUTS = ("metrics.csv", "best.safetensors", "last.safetensors", "checkpoints", "config.json")


def prepare_run_folder(out: Path, *, resume: bool, overwrite: bool) -> dict[str, typing.Any] | None:
    """The checkpoint to resume from (``resume``), else None once ``out`` is known to hold no other run
    (``overwrite`` lets the caller replace one: see ``clear_run_outputs``)."""
    if resume:
        return load_checkpoint(out / "checkpoints" / "last.pt")
    if any((out / n).exists() for n in RUN_OUTPUTS) and not overwrite:
        raise OutputError(
            "already holds a training run; pass --resume to continue it or --overwrite to start afresh", out
        )
    return None


def clear_run_outputs(out: Path) -> None:
    """Remove a previous run's outputs (--overwrite), so nothing stale is taken for the new run's."""
    for p in (out / n for n in RUN_OUTPUTS):
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_config(out: Path, config: Mapping[str, object]) -> None:
    _write_text(out / "config.json", json.dumps(config, indent=2) + "\n")


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Rows of a run's metrics.csv ([] if there is none yet)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_metrics(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(METRIC_COLUMNS))
    writer.writeheader()
    writer.writerows([{k: row.get(k, "") for k in METRIC_COLUMNS} for row in rows])
    _write_text(path, buf.getvalue())


def append_metrics(path: Path, row: EpochRow) -> list[dict[str, str]]:
    """Add ``row`` to metrics.csv; returns all rows as strings (for the curves only)."""
    rows: list[Mapping[str, object]] = [*read_metrics(path), row.csv_fields()]
    write_metrics(path, rows)
    return read_metrics(path)


def drop_unfinished_epochs(path: Path, epochs_done: int) -> None:
    """On resume: rows of epochs the checkpoint has not finished are redone, so they go."""
    write_metrics(path, [r for r in read_metrics(path) if int(r["epoch"]) <= epochs_done])


def export_generator(generator: ResnetGenerator, out: Path, meta: Mapping[str, str], *, best: bool) -> None:
    """``last.safetensors`` (and ``best.safetensors`` when ``best``) with the run's metadata."""
    from deblurtool.models.weights import save_generator

    save_generator(generator, out / "last.safetensors", extra=dict(meta))
    if best:
        save_generator(generator, out / "best.safetensors", extra=dict(meta))


def plot_curves(out: Path, rows: Sequence[Mapping[str, str]]) -> None:
    """loss.png, psnr.png, ssim.png from the metrics rows (extra pairs' curves when the run has them)."""
    from trainers.plots import save_line_plot

    epochs = [float(r["epoch"]) for r in rows]

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    save_line_plot(
        out / "loss.png", {"g_loss": (epochs, col("g_loss"))}, title="generator loss", xlabel="epoch"
    )
    for metric in ("psnr", "ssim"):
        series = {metric: (epochs, col(metric)), "input": (epochs, col(f"input_{metric}"))}
        if any(r.get(f"extra_{metric}") for r in rows):
            series[f"extra_{metric}"] = (epochs, col(f"extra_{metric}"))
        save_line_plot(out / f"{metric}.png", series, title=f"test {metric.upper()}", xlabel="epoch")


def epoch_line(row: EpochRow, *, epochs: int, best_epoch: int) -> str:
    """The log line of a finished epoch: losses, scores against the input's, extras, sharp check, best."""
    s = row.scores
    extra = f" extra {s.extra_psnr:.4f}" if s.extra_psnr is not None else ""
    sharp = f" | sharp in->out min {s.sharp_min_psnr:.3f} dB" if s.sharp_min_psnr is not None else ""
    return (
        f"epoch {row.epoch}/{epochs} step {row.step}: g_loss {row.losses['g_loss']:.6g} "
        f"d_loss {row.losses['d_loss']:.6g} | PSNR {s.psnr:.4f} dB SSIM {s.ssim:.5f} "
        f"(input {s.input_psnr:.4f} / {s.input_ssim:.5f}){extra}{sharp} | score {s.select_score:.4f} | "
        f"best epoch {best_epoch}"
    )
