"""One-off comparison of int8 variants of the shipped model on one 1280x720 frame (2 threads, median of 3):
NNCF preset MIXED (the default's) or PERFORMANCE, and the inference precision of the layers int8 leaves in
floating point (bf16 or f32). Prints ms per frame and each variant's quality as ``int8_psnr`` measures it.

    python scripts/bench_int8_variants.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from deblurtool.engines import openvino_runner as ovr
from deblurtool.engines.select import residual_module
from deblurtool.models.weights import load_generator


def main() -> None:
    torch.set_num_threads(2)
    body = residual_module(load_generator(None))
    source = ovr.convert(body)
    import openvino as ov  # after deblurtool.engines: its import switches OpenVINO's telemetry off

    core = ov.Core()
    frame = np.random.default_rng(0).uniform(-1, 1, (1, 3, 720, 1280)).astype(np.float32)
    crops = ovr.calibration_batches()
    for preset in ("MIXED", "PERFORMANCE"):
        model = ovr.quantize(source.clone(), preset)
        for hint in ("bf16", "f32"):
            config = {
                "INFERENCE_PRECISION_HINT": hint,
                "INFERENCE_NUM_THREADS": 2,
                "PERFORMANCE_HINT": "LATENCY",
            }
            compiled = {}
            for shape in (frame.shape, crops[0].shape):
                m = model.clone()
                m.reshape(list(shape))
                compiled[shape] = core.compile_model(m, "CPU", config)
            run = compiled[frame.shape]
            run(frame)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                run(frame)
                times.append(time.perf_counter() - t)
            crop_model = compiled[crops[0].shape]
            quality = ovr.int8_psnr(body, lambda b: crop_model(b)[0])  # noqa: B023 (used at once)
            print(f"{preset:12s} hint {hint:5s} {1000 * np.median(times):7.0f} ms  quality {quality:.1f} dB")


if __name__ == "__main__":
    main()
