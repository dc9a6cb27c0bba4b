"""deblurtool: batch motion deblurring of videos and images.

>>> from deblurtool import Deblurrer
>>> deblur = Deblurrer.from_weights()          # the shipped default model
>>> sharp_rgb_u8 = deblur(blurry_rgb_u8)       # HxWx3 uint8 in, same out
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from deblurtool.inference import Deblurrer

__all__ = ["Deblurrer", "__version__"]


def __getattr__(name: str) -> Any:  # lazy: `deblurtool --help` need not import torch
    if name == "Deblurrer":
        from deblurtool.inference import Deblurrer

        return Deblurrer
    raise AttributeError(name)
