"""deblurtool: batch motion deblurring of videos and images.

>>> from deblurtool import Deblurrer
>>> deblur = Deblurrer.from_weights()          # the shipped default model
>>> sharp_rgb_u8 = deblur(blurry_rgb_u8)       # HxWx3 uint8 in, same out

``run_video`` and ``run_folder`` (:mod:`deblurtool.pipeline`) run a model over a video or a folder of images;
``EncodeConfig``, ``TileConfig``, ``RuntimeConfig`` and ``ModelSpec`` are their settings. Paths may be ``str``
or any ``os.PathLike``.

>>> from deblurtool import EncodeConfig, run_video
>>> run_video("in.mp4", "out.mkv", deblur, EncodeConfig(codec="ffv1"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one version number: pyproject.toml reads it from here

from deblurtool.config import EncodeConfig, ModelSpec, RuntimeConfig, TileConfig  # light: no torch

if TYPE_CHECKING:
    from deblurtool.inference import Deblurrer
    from deblurtool.pipeline import run_folder, run_video

__all__ = [
    "Deblurrer",
    "EncodeConfig",
    "ModelSpec",
    "RuntimeConfig",
    "TileConfig",
    "__version__",
    "run_folder",
    "run_video",
]


def __getattr__(name: str) -> Any:  # lazy: `deblurtool --help` need not import torch
    if name == "Deblurrer":
        from deblurtool.inference import Deblurrer

        return Deblurrer
    if name in ("run_video", "run_folder"):
        from deblurtool import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
