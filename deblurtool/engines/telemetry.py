"""No network calls from the engines: OpenVINO's usage telemetry is turned off in deblurtool's process.

OpenVINO's model converter and NNCF report usage through the ``openvino_telemetry`` package unless the user
has opted out: each event is sent from a worker thread by a forked child process (``multiprocessing``), which
looks up and calls a web analytics host. Forking from a thread of a process that holds other threads' locks
(PyTorch, OpenVINO) can leave such children deadlocked, and deblurtool promises not to use the network. So,
before OpenVINO or NNCF is imported, :func:`disable_engine_telemetry` makes ``openvino_telemetry`` look not
installed to this process: both libraries then use their own no-op stand-ins (the path they take where the
package is absent). Nothing is written to the user's opt-in file (``~/intel/openvino_telemetry``), and other
processes of the user are not affected.

Where the package was already imported in this process (a Python program that imported OpenVINO before
deblurtool), sending is switched off on the loaded package instead: consent is declined and its sender does
nothing.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

PACKAGE = "openvino_telemetry"


def disable_engine_telemetry() -> None:
    """Turn off OpenVINO's and NNCF's telemetry for this process (idempotent; see the module docstring)."""
    if PACKAGE not in sys.modules:
        # An entry of None makes `import openvino_telemetry` raise ImportError (the documented "not
        # installed" path of OpenVINO's converter and of NNCF).
        sys.modules[PACKAGE] = None  # type: ignore[assignment]
        return
    if sys.modules[PACKAGE] is not None:
        _switch_off_loaded()


def _switch_off_loaded() -> None:
    """Decline consent and silence the sender of an ``openvino_telemetry`` already imported here."""
    with contextlib.suppress(Exception):  # another version's layout: the sender patch below still applies
        from openvino_telemetry.utils.opt_in_checker import (  # type: ignore[import-untyped]
            ConsentCheckResult,
            OptInChecker,
        )

        def declined(self: Any, *args: Any, **kwargs: Any) -> Any:
            return ConsentCheckResult.DECLINED

        OptInChecker.check = declined
    with contextlib.suppress(Exception):
        from openvino_telemetry.utils.sender import TelemetrySender  # type: ignore[import-untyped]

        def drop(self: Any, *args: Any, **kwargs: Any) -> None:
            return None

        TelemetrySender.send = drop
    with contextlib.suppress(Exception):
        import openvino_telemetry  # type: ignore[import-untyped]

        instance = getattr(openvino_telemetry.Telemetry, "_SingletonMetaClass__single_instance", None)
        if instance is not None:
            instance.consent = False
