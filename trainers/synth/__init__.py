"""GoPro-like synthetic motion blur (``blur``) and the dataset writer of ``deblurtool synth``."""

from trainers.synth.blur import GAMMA_EXPONENT, Motion, SynthParams, content_rescale, synthesize
from trainers.synth.dataset import make_dataset

__all__ = ["GAMMA_EXPONENT", "Motion", "SynthParams", "content_rescale", "make_dataset", "synthesize"]
