"""Training and evaluation of the deblurtool generator (GoPro WGAN-GP after DeblurGAN).

``deblurtool`` (inference) never imports this package except inside the ``train`` command; this package
imports ``deblurtool`` freely, so what users run (tiling, metrics, weights files) is what training scores
and writes.
Entry points: ``deblurtool train DATA --out RUN``, ``python -m trainers.train``, and
``torchrun -m trainers.train``.
"""
