"""Training and evaluation of the deblurtool generators.

Two recipes, picked by the architecture: DeblurGAN's WGAN-GP recipe for the ResNet-9 (``trainers.train``)
and the restoration recipe for the NAFNet-style U-Net (``trainers.restore``: pixel + frequency loss, AdamW,
cosine decay over a budget, EMA, held-out scenes from ``trainers.holdout``, sources from ``trainers.mix``).
Their options are declared once, in ``trainers.config.TrainConfig``.

``deblurtool`` (inference) imports this package only in the ``train`` and ``synth`` commands (``train``
builds its options from the torch-free ``trainers.config``); this package imports ``deblurtool`` freely, so
what users run (tiling, metrics, weights files) is what training scores and writes.
Entry points: ``deblurtool train DATA --out RUN [--arch nafunet]``, ``python -m trainers.train`` (the same
command), ``torchrun -m trainers.train`` (resnet9), ``python -m trainers.restore --set key=value``
(the restoration recipe's own fields) and ``deblurtool synth``.
"""
