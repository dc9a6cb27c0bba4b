"""Speed and quality measurement behind ``deblurtool bench``, done so the numbers can be trusted.

:mod:`.profile` counts MACs and peak memory and times calls; :mod:`.speed` times the PyTorch variants of
running the generator; :mod:`.engines` the engines side by side; :mod:`.models` several weights files side
by side; :mod:`.quality` scores a model on real pairs; :mod:`.results` holds the typed results;
:mod:`.report` writes the JSON from them and builds the tables; :mod:`.run` puts them together for one
:class:`BenchConfig`.
"""

from deblurtool.bench.profile import (
    MacCounter,
    PeakMemory,
    count_macs,
    layer_macs,
    matmul_peak_tflops,
    synchronize,
    time_variant,
)
from deblurtool.bench.quality import example_path, highest_gradient_box, run_quality, side_by_side
from deblurtool.bench.report import (
    REFERENCES,
    check_writable,
    quality_table,
    speed_table,
    system_info,
    temporal_table,
    write_json,
)
from deblurtool.bench.results import BenchReport
from deblurtool.bench.run import SAMPLES_DIR, BenchConfig, load_model, run_bench
from deblurtool.bench.speed import (
    TILINGS,
    Variant,
    available_precisions,
    plain_fp32_loop,
    run_speed,
    speed_variants,
    synthetic_frame,
)

__all__ = [
    "REFERENCES",
    "SAMPLES_DIR",
    "TILINGS",
    "BenchConfig",
    "BenchReport",
    "MacCounter",
    "PeakMemory",
    "Variant",
    "available_precisions",
    "check_writable",
    "count_macs",
    "example_path",
    "highest_gradient_box",
    "layer_macs",
    "load_model",
    "matmul_peak_tflops",
    "plain_fp32_loop",
    "quality_table",
    "run_bench",
    "run_quality",
    "run_speed",
    "side_by_side",
    "speed_table",
    "speed_variants",
    "synchronize",
    "synthetic_frame",
    "system_info",
    "temporal_table",
    "time_variant",
    "write_json",
]
