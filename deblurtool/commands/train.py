"""``deblurtool train DATA --out RUN``: train, fine-tune or resume a generator (trainers imported lazily)."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import Device, Overwrite, Precision, handle_errors

if TYPE_CHECKING:
    from trainers.config import TrainConfig

_DATA, _LOSS, _OPT, _MODEL, _EVAL, _RUN = "Data", "Losses", "Optimisation", "Model", "Evaluation", "Run"


def _o(*names: str, panel: str, help: str, **kw: object) -> object:
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)  # type: ignore[arg-type]


@handle_errors
def train(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Training data root(s) (see above); the first root's test split is scored.",
            file_okay=False,
            metavar="DATA",
        ),
    ],
    out: Annotated[
        Path,
        _o(
            "--out",
            "-o",
            panel=_RUN,
            help="Run folder for metrics, plots, weights, checkpoints.",
            file_okay=False,
        ),
    ],
    blur: Annotated[
        str, _o("--blur", panel=_DATA, help="GoPro blur variant: linear (blur/) or gamma (blur_gamma/).")
    ] = "linear",
    crop: Annotated[
        int,
        _o(
            "--crop",
            panel=_DATA,
            min=16,
            help="Train on aligned random NxN crops at full "
            "resolution, with random flips (the default protocol).",
        ),
    ] = 256,
    crop_tries: Annotated[
        int,
        _o(
            "--crop-tries",
            panel=_DATA,
            min=1,
            help="Take each training crop as the most textured (mean gradient of the sharp crop) of N "
            "random candidates: photo collections hold more flat sky than GoPro footage; 1: plain crops.",
        ),
    ] = 1,
    resize: Annotated[
        int,
        _o(
            "--resize",
            panel=_DATA,
            min=0,
            help="Instead of crops, resize whole frames to NxN "
            "(the report's protocol: 256); scores are then on resized frames too.",
        ),
    ] = 0,
    steps_per_epoch: Annotated[
        int,
        _o(
            "--steps-per-epoch",
            panel=_DATA,
            min=0,
            help="Steps (batches) per epoch; 0: one pass over the pairs. More than one pass (or --mix, "
            "--sharp-share) samples with replacement.",
        ),
    ] = 0,
    mix: Annotated[
        str,
        _o(
            "--mix",
            panel=_DATA,
            help="Sampling weights of the DATA roots, comma-separated in their order (e.g. 0.5,0.3,0.2): "
            "each sample comes from root k with probability w_k/sum(w). Empty: proportional to their sizes.",
        ),
    ] = "",
    sharp_share: Annotated[
        float,
        _o(
            "--sharp-share",
            panel=_DATA,
            min=0.0,
            max=0.99,
            help="Share of samples whose input is the sharp frame itself: teaches the model to leave sharp "
            "footage alone.",
        ),
    ] = 0.0,
    scale_min: Annotated[
        float,
        _o(
            "--scale-min",
            panel=_DATA,
            min=0.05,
            max=1.0,
            help="Shrink each training sample by a random factor in [S, 1] (area filter): real blur, "
            "shorter. 1: no scaling.",
        ),
    ] = 1.0,
    dihedral: Annotated[
        bool,
        _o("--dihedral", panel=_DATA, help="Random transposes besides the flips (all 8 orientations)."),
    ] = False,
    batch_size: Annotated[int, _o("--batch-size", panel=_DATA, min=1, help="Training pairs per step.")] = 1,
    workers: Annotated[int, _o("--workers", panel=_DATA, min=0, help="DataLoader worker processes.")] = 2,
    gan: Annotated[
        str,
        _o(
            "--gan",
            panel=_LOSS,
            help="wgan-gp (gradient penalty) or wgan (the report's plain WGAN with weight clipping).",
        ),
    ] = "wgan-gp",
    gp_weight: Annotated[
        float, _o("--gp-weight", panel=_LOSS, min=0.0, help="Gradient penalty weight (lambda).")
    ] = 10.0,
    clip_value: Annotated[
        float, _o("--clip-value", panel=_LOSS, min=0.0, help="Weight clipping for --gan wgan.")
    ] = 0.01,
    adv_weight: Annotated[
        float,
        _o("--adv-weight", panel=_LOSS, min=0.0, help="Adversarial loss weight; 0 trains without a critic."),
    ] = 1.0,
    perceptual_weight: Annotated[
        float,
        _o(
            "--perceptual-weight", panel=_LOSS, min=0.0, help="VGG16 perceptual loss weight; 0 turns VGG off."
        ),
    ] = 100.0,
    perceptual_layers: Annotated[
        str,
        _o(
            "--perceptual-layers",
            panel=_LOSS,
            help="Comma-separated VGG16 layers (Keras names: block1_conv1 ... block5_conv3), MSEs averaged.",
        ),
    ] = "block3_conv3",
    vgg_weights: Annotated[
        str,
        _o(
            "--vgg-weights",
            panel=_LOSS,
            help="imagenet (torchvision's download and torch "
            "hub cache) or PATH to a torchvision VGG16 state_dict.",
        ),
    ] = "imagenet",
    pixel_loss: Annotated[
        str,
        _o(
            "--pixel-loss",
            panel=_LOSS,
            help="Pixel loss: none, l1, mse or charbonnier (not in the report; helps short CPU runs).",
        ),
    ] = "none",
    pixel_weight: Annotated[
        float, _o("--pixel-weight", panel=_LOSS, min=0.0, help="Pixel loss weight.")
    ] = 0.0,
    freq_weight: Annotated[
        float,
        _o(
            "--freq-weight",
            panel=_LOSS,
            min=0.0,
            help="Frequency loss weight: L1 between the orthonormal 2-D FFTs of output and target "
            "(MIMO-UNet's auxiliary loss); on the scale of a per-pixel L1.",
        ),
    ] = 0.0,
    epochs: Annotated[
        int,
        _o(
            "--epochs",
            panel=_OPT,
            min=1,
            help="Epochs; the learning rate decays linearly to 0 over the second half.",
        ),
    ] = 200,
    lr: Annotated[
        float, _o("--lr", panel=_OPT, min=0.0, help="Adam learning rate (betas 0.5, 0.999).")
    ] = 1e-4,
    critic_steps: Annotated[
        int, _o("--critic-steps", panel=_OPT, min=1, help="Critic updates per generator update.")
    ] = 5,
    seed: Annotated[
        int, _o("--seed", panel=_OPT, help="Seed of initialisation, data order, crops, flips.")
    ] = 0,
    ngf: Annotated[int, _o("--ngf", panel=_MODEL, min=1, help="Generator width.")] = 64,
    n_blocks: Annotated[int, _o("--n-blocks", panel=_MODEL, min=0, help="Generator residual blocks.")] = 9,
    critic_ndf: Annotated[int, _o("--critic-ndf", panel=_MODEL, min=1, help="Critic width.")] = 64,
    critic_norm: Annotated[
        str,
        _o(
            "--critic-norm",
            panel=_MODEL,
            help="Critic normalisation: instance (default: "
            "per sample, sound with the gradient penalty), layer, batch or none.",
        ),
    ] = "instance",
    init_weights: Annotated[
        Path | None,
        _o(
            "--init-weights",
            panel=_MODEL,
            dir_okay=False,
            help="Start the generator from this .safetensors (fine-tuning).",
        ),
    ] = None,
    eval_limit: Annotated[
        int,
        _o(
            "--eval-limit",
            panel=_EVAL,
            min=0,
            help="Score N test pairs spread over the split each epoch; 0: all.",
        ),
    ] = 0,
    eval_extra: Annotated[
        list[Path] | None,
        _o(
            "--eval-extra",
            panel=_EVAL,
            file_okay=False,
            help="Extra pairs folder scored each epoch (extra_psnr/ssim); never picks the best. Repeatable.",
        ),
    ] = None,
    sharp_check: Annotated[
        int,
        _o(
            "--sharp-check",
            panel=_EVAL,
            min=0,
            help="Each epoch, feed N sharp frames (test split, then extras) as input and report how far "
            "the output moves from them (sharp_min_psnr, sharp_mean_psnr).",
        ),
    ] = 0,
    sharp_floor: Annotated[
        float,
        _o(
            "--sharp-floor",
            panel=_EVAL,
            help="With --sharp-check, only an epoch leaving every sharp frame at least this many dB PSNR "
            "from itself can be the best.",
        ),
    ] = 40.0,
    select: Annotated[
        str,
        _o(
            "--select",
            panel=_EVAL,
            help="Best epoch by: test (PSNR on the first root's test split) or test+extra (the mean of "
            "the gains over the blurry input on the test split and on the --eval-extra pairs).",
        ),
    ] = "test",
    device: Device = "auto",
    precision: Precision = "auto",
    log_every: Annotated[
        int,
        _o("--log-every", panel=_RUN, min=1, help="Log line every N steps when stdout is not a terminal."),
    ] = 50,
    checkpoint_every: Annotated[
        int,
        _o(
            "--checkpoint-every",
            panel=_RUN,
            min=0,
            help="Also checkpoint every N steps mid-epoch; 0: epoch ends only.",
        ),
    ] = 500,
    stop_at_step: Annotated[
        int,
        _o(
            "--stop-at-step",
            panel=_RUN,
            min=0,
            help="Checkpoint and stop after this "
            "global step (time-sliced runs; --resume continues); 0: never.",
        ),
    ] = 0,
    resume: Annotated[
        bool,
        _o(
            "--resume",
            panel=_RUN,
            help="Continue the run in --out from its checkpoint; options left out keep the run's values.",
        ),
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Train a deblurring generator on blur/sharp pairs (DeblurGAN: WGAN-GP + VGG16 perceptual loss).

    DATA is a GOPRO_Large root (train/ and test/ with SEQ/{blur,blur_gamma,sharp}) or your own pairs
    ({blur,sharp}/, SEQ/{blur,sharp}/, or train/ and test/ holding either). The defaults reproduce the
    report: WGAN-GP (gradient penalty 10, 5 critic steps), perceptual weight 100 on block3_conv3, Adam 1e-4
    (betas 0.5, 0.999, linear decay over the second half), batch 1, 256 crops, 200 epochs.

    Every epoch the generator is scored on the test split through the same tiling users run (full-frame
    PSNR/SSIM); RUN gets metrics.csv, loss/psnr/ssim plots, last.safetensors and best.safetensors (use with
    [bold]deblurtool folder --weights[/]) and checkpoints/last.pt for --resume. Runs under
    [bold]torchrun --nproc_per_node=N -m deblurtool train ...[/] too (same options).
    """
    from trainers.train import train as run_training

    cfg, given = config_from_context(ctx)
    result = run_training(cfg, given)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun the summary is rank 0's, like every other line of the run
    state = "stopped early" if result.stopped_early else "done"
    ui.say(
        f"{state}: {result.epochs_done} epochs, step {result.global_step}; best epoch {result.best_epoch} "
        f"(PSNR {result.best_psnr:.3f} dB, SSIM {result.best_ssim:.4f}) -> {result.out / 'best.safetensors'}"
    )


def config_from_context(ctx: typer.Context) -> tuple[TrainConfig, set[str]]:
    """The TrainConfig of a parsed ``train`` command line, and the names of the options spelled out on it.

    Option names are TrainConfig's field names, so the values map one to one (paths become strings, lists
    tuples). Options left at their defaults are not "given": on --resume they keep the checkpoint's values.
    """
    from trainers.config import TrainConfig

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
            value = ""  # --init-weights left out
        values[name] = value
    # Compared by name: typer vendors click, and its ParameterSource enum is not public API.
    given = {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    }
    return TrainConfig(**values), given  # type: ignore[arg-type]


def parse_train_args(argv: list[str]) -> tuple[TrainConfig, set[str]]:
    """``config_from_context`` for an argument list (``DATA... --out RUN [options]``), without running."""
    app = typer.Typer()
    app.command()(train)
    command = typer.main.get_command(app)
    with command.make_context("train", list(argv)) as ctx:
        return config_from_context(typing.cast(typer.Context, ctx))
