"""Engines other than eager PyTorch for the CPU: OpenVINO (fp32, bf16, int8 through NNCF), with a cache of
converted and compiled models (:mod:`.cache`). Imported only when such an engine runs (``--help`` and the
GPU path never import OpenVINO)."""
