"""The engines that run a generator and the one place that picks among them.

:mod:`.select` decides engine and precision once (from the device, the user's options, the model and what
is installed and passes its check) and returns a runner: eager PyTorch (:class:`.select.TorchRunner`) or
OpenVINO (:mod:`.openvino_runner`: fp32, bf16, int8 through NNCF), with a cache of converted and compiled
models (:mod:`.cache`). OpenVINO is imported only when it runs (``--help`` and the GPU path never import it).
"""

from deblurtool.engines.telemetry import disable_engine_telemetry

disable_engine_telemetry()  # before any engine imports OpenVINO or NNCF: no telemetry, no network
