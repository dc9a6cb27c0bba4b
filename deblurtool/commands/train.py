"""``deblurtool train DATA --out RUN``: train, fine-tune or resume a generator.

The options are built from ``trainers.config.TrainConfig`` (each field declares its flag, section, help and
default there); the training code itself is imported only when the command runs.
"""

from __future__ import annotations

import inspect
import os
import typing
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import handle_errors
from trainers.config import GAN, SECTIONS, TrainConfig, opt_of

HELP = """Train a deblurring generator on blur/sharp pairs, with the recipe of its architecture.

[bold]--arch resnet9[/] (default): DeblurGAN's recipe. DATA is a GOPRO_Large root (train/ and test/ with
SEQ/{blur,blur_gamma,sharp}) or your own pairs ({blur,sharp}/, SEQ/{blur,sharp}/, or train/ and test/
holding either). The defaults reproduce the report: WGAN-GP (gradient penalty 10, 5 critic steps),
perceptual weight 100 on block3_conv3, Adam 1e-4 (betas 0.5, 0.999, linear decay over the second half),
batch 1, 256 crops, 200 epochs. Every epoch the generator is scored on the test split through the same
tiling users run; RUN gets metrics.csv, loss/psnr/ssim plots, last.safetensors, best.safetensors and
checkpoints/last.pt for --resume. Runs under [bold]torchrun --nproc_per_node=N -m deblurtool train ...[/]
too.

[bold]--arch nafunet[/]: the restoration recipe for the U-Net of NAFNet-style blocks: Charbonnier + FFT
loss, AdamW with warm-up and cosine decay over a budget (--steps, --cpu-minutes or --minutes), an EMA of
the weights. DATA is one folder laid out as shared/data: --sources names the mix of real pairs and
high-frame-rate clips averaged on the fly, and the scenes held out for choosing. Every
--eval-every-minutes the EMA weights are scored on the held-out scenes (gain in dB over the blurry input,
sharp frames given as input); RUN gets metrics.csv, last.safetensors, best.safetensors (best held-out
score with every sharp frame at least --sharp-floor dB from itself) and state.pt for --resume. On a CUDA
GPU: [bold]deblurtool train DATA --out RUN --arch nafunet --device cuda --minutes 10[/] (bf16 or fp16
autocast, larger crops and batches by default; scripts/train_gpu.sh).

Use the weights with [bold]deblurtool folder --weights RUN/best.safetensors[/]. Options of the other
recipe are refused.
"""


def _cli_type(name: str) -> tuple[object, object]:
    """(annotation type, default) of TrainConfig field ``name`` on the command line."""
    f = TrainConfig.__dataclass_fields__[name]
    if name == "data":
        return list[Path], inspect.Parameter.empty
    if name == "out":
        return Path, inspect.Parameter.empty
    if name == "mix":
        return str, ""
    if name == "eval_extra":
        return list[Path] | None, None
    if name == "init_weights":
        return Path | None, None
    return type(f.default), f.default


def _parameters() -> list[inspect.Parameter]:
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    ordered = sorted(fields(TrainConfig), key=lambda f: SECTIONS.index(opt_of(f.name).section))
    for f in ordered:
        o = opt_of(f.name)
        kind, default = _cli_type(f.name)
        info: object
        if o.argument:
            info = typer.Argument(help=o.help, metavar=o.metavar, file_okay=False, show_default=False)
        else:
            names = [f"--{f.name.replace('_', '-')}"] + (["-o"] if f.name == "out" else [])
            help_text = o.help
            if o.nafunet is not None:
                help_text += f" [nafunet: {o.nafunet}" + (
                    f"; on CUDA {o.nafunet_gpu}]" if o.nafunet_gpu is not None else "]"
                )
            if o.recipe != "both":
                help_text = f"({o.recipe}) {help_text}"
            extra: dict[str, object] = {"file_okay": False} if f.name in ("out", "eval_extra") else {}
            if f.name == "init_weights":
                extra = {"dir_okay": False}
            info = typer.Option(*names, help=help_text, rich_help_panel=o.section, metavar=o.metavar, **extra)  # type: ignore[arg-type]
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,  # any order (the panels follow SECTIONS), no default needed
                default=default,
                annotation=Annotated[kind, info],
            )
        )
    return params


@handle_errors
def train(ctx: typer.Context, **options: object) -> None:
    cfg, given = config_from_context(ctx)
    if os.environ.get("RANK", "0") != "0" and cfg.recipe == GAN:
        _run_gan(cfg, given, quiet=True)
        return
    if cfg.recipe == GAN:
        _run_gan(cfg, given, quiet=False)
    else:
        _run_restore(cfg, given)


def _run_gan(cfg: TrainConfig, given: set[str], *, quiet: bool) -> None:
    from trainers.train import train as run_training

    result = run_training(cfg, given)
    if quiet:
        return  # under torchrun the summary is rank 0's, like every other line of the run
    state = "stopped early" if result.stopped_early else "done"
    head = f"{state}: {result.epochs_done} epochs, step {result.global_step}"
    if result.best_path is None:
        ui.say(f"{head}; no epoch finished yet, so no weights were written (--resume continues)")
        return
    ui.say(
        f"{head}; best epoch {result.best_epoch} (PSNR {result.best_psnr:.3f} dB, "
        f"SSIM {result.best_ssim:.4f}) -> {result.best_path}"
    )


def _run_restore(cfg: TrainConfig, given: set[str]) -> None:
    from trainers.restore_run import train_restore

    result = train_restore(cfg, given, log=ui.tell)
    state = "stopped early" if result.stopped_early else "done"
    head = f"{state}: step {result.step}"
    if result.best_path is None:
        ui.say(
            f"{head}; no evaluation passed the sharp-input floor yet: nothing written as best "
            f"(latest weights: {result.last_path})"
            if result.last_path is not None
            else f"{head}; no evaluation yet, so no weights were written (--resume continues)"
        )
        return
    ui.say(
        f"{head}; best step {result.best_step} (held-out gain {result.best_score:+.3f} dB) "
        f"-> {result.best_path}"
    )


train.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in _parameters()} | {"return": None}
train.__doc__ = HELP


def config_from_context(ctx: typer.Context) -> tuple[TrainConfig, set[str]]:
    """The TrainConfig of a parsed ``train`` command line, and the names of the options spelled out on it.

    Option names are TrainConfig's field names, so the values map one to one (paths become strings, lists
    tuples). Options left at their defaults are not "given": on --resume they keep the checkpoint's values,
    and the recipe of --arch supplies its own defaults for them (``TrainConfig.create``).
    """
    values: dict[str, object] = {}
    for name, value in ctx.params.items():
        if name == "mix":
            try:
                value = tuple(float(w) for w in str(value).split(",")) if str(value).strip() else ()
            except ValueError:
                raise typer.BadParameter(
                    f"expected comma-separated numbers, got {value!r}", ctx, param_hint="--mix"
                ) from None
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list | tuple):
            value = tuple(str(v) for v in value)
        elif value is None:
            value = () if name == "eval_extra" else ""  # --eval-extra, --init-weights left out
        values[name] = value
    # Compared by name: typer vendors click, and its ParameterSource enum is not public API.
    given = {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    }
    return TrainConfig.create(values, given), given


def parse_train_args(argv: list[str]) -> tuple[TrainConfig, set[str]]:
    """``config_from_context`` for an argument list (``DATA... --out RUN [options]``), without running."""
    app = typer.Typer()
    app.command()(train)
    command = typer.main.get_command(app)
    with command.make_context("train", list(argv)) as ctx:
        return config_from_context(typing.cast(typer.Context, ctx))
