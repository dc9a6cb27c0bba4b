"""No network and no stray processes: a deblur run on OpenVINO, in a process set up as a user's shell is
(no CI variables, a home without OpenVINO's opt-in file), makes no socket connection or name lookup, forks
no child (OpenVINO's and NNCF's telemetry send from forked children) and writes nothing into the home
folder; and the switch that turns telemetry off works whether or not OpenVINO was imported first."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_image, save_image

# Run in a fresh interpreter: records every socket connection, name lookup, fork and multiprocessing start
# (failing the connection or lookup) while `deblurtool ARGS` runs, then writes what it saw to REPORT.
_DRIVER = r"""
import json, os, socket, sys
report, args = sys.argv[1], sys.argv[2:]
seen = {"connect": [], "lookup": [], "fork": 0, "process": 0}

def refuse_connect(self, address, *a):
    seen["connect"].append(repr(address))
    raise OSError("network use refused by the test")

def refuse_lookup(host, *a, **k):
    seen["lookup"].append(repr(host))
    raise socket.gaierror("name lookup refused by the test")

socket.socket.connect = refuse_connect
socket.socket.connect_ex = refuse_connect
socket.getaddrinfo = refuse_lookup
socket.gethostbyname = refuse_lookup
os.register_at_fork(before=lambda: seen.__setitem__("fork", seen["fork"] + 1))
import multiprocessing.process
real_start = multiprocessing.process.BaseProcess.start
def counting_start(self):
    seen["process"] += 1
    return real_start(self)
multiprocessing.process.BaseProcess.start = counting_start

from deblurtool.cli import app
try:
    app(args, prog_name="deblurtool")
except SystemExit as e:
    seen["exit"] = e.code
import psutil
seen["children"] = [p.name() for p in psutil.Process().children(recursive=True)]
seen["telemetry_imported"] = sys.modules.get("openvino_telemetry") is not None
with open(report, "w") as f:
    json.dump(seen, f)
"""

# The variables OpenVINO's telemetry reads as "running in CI" (then it stays off), and NNCF's own switches:
# a user's shell has none of them.
_CI_VARIABLES = ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV")


def _user_env(home: Path, cache: Path, weights: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CI_VARIABLES}
    env.update(HOME=str(home), DEBLURTOOL_CACHE=str(cache), DEBLURTOOL_WEIGHTS=str(weights))
    env.pop("XDG_CACHE_HOME", None)
    return env


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=pytest.mark.slow)])
def test_an_openvino_run_makes_no_network_call_and_forks_nothing(
    tmp_path: Path, tiny_weights: Path, precision: str
) -> None:
    pytest.importorskip("openvino")
    src, dst, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    src.mkdir()
    home.mkdir()
    save_image(src / "a.png", make_image("u8_rgb", height=40, width=56))
    report = tmp_path / "seen.json"
    args = ["folder", str(src), str(dst), "--engine", "openvino", "--precision", precision]
    run = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(report), *args],
        env=_user_env(home, tmp_path / "cache", tiny_weights),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(report.read_text())
    assert seen.get("exit") in (0, None), run.stderr
    assert (dst / "a.png").is_file()
    assert seen["connect"] == [] and seen["lookup"] == [], seen
    assert seen["fork"] == 0 and seen["process"] == 0 and seen["children"] == [], seen
    assert not seen["telemetry_imported"]
    assert list(home.iterdir()) == []  # no ~/intel/openvino_ga_cid, stats or opt-in file


_LATE_DRIVER = r"""
import os
import nncf, openvino  # imported before deblurtool (a user's program): their telemetry is loaded and live
from openvino.tools.ovc.telemetry_utils import init_ovc_telemetry
from deblurtool.engines.telemetry import disable_engine_telemetry
disable_engine_telemetry()
forks = []
os.register_at_fork(before=lambda: forks.append(1))
telemetry = init_ovc_telemetry()  # what each ov.convert_model call does, then sends its events
telemetry.start_session("ovc")
telemetry.send_event("ovc", "version", "x")
from nncf.telemetry import telemetry as nncf_telemetry
nncf_telemetry.send_event("nncf", "test", "x")
print("consent", telemetry.consent, "forks", len(forks))
"""


@pytest.mark.slow
def test_the_switch_also_silences_telemetry_imported_before_it(tmp_path: Path) -> None:
    try:  # (this process has it switched off by now: ask the installed distributions)
        importlib.metadata.version("openvino-telemetry")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("openvino-telemetry is not installed")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _CI_VARIABLES}
    env["HOME"] = str(home)
    run = subprocess.run(
        [sys.executable, "-c", _LATE_DRIVER], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "consent False forks 0" in run.stdout, run.stdout + run.stderr
