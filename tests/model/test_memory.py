"""Reusing freed memory (loyaltysim.model.memory) is applied once per process, can be turned off, and changes no number.

Each case runs in a fresh process: the allocator's settings are process-wide and can be set only once there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

RUN = """
import hashlib, numpy as np
from pathlib import Path
from loyaltysim.model import memory
from loyaltysim.scenario import load_scenario, scenario_from_dict
from loyaltysim.experiments.run import simulate
data = load_scenario(Path("experiments/scenarios/baseline.toml")).to_dict()
data["market"]["customers"]["population"] = 400
data["time"]["horizon"] = "20 weeks"
data["time"]["warmup"] = "4 weeks"
data["policy"]["programmes"] = [{"kind": "points", "name": "Points"}]
firms = simulate(scenario_from_dict(data), seed=4).tables["firms"]
digest = hashlib.sha256(firms.select_dtypes("number").to_numpy().tobytes()).hexdigest()
print(memory.reuse_freed_memory(), digest)
"""


def _run(**env: str) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "LOYALTYSIM_SYSTEM_MALLOC"}
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=120,
                          env={**clean, **env}, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    applied, digest = proc.stdout.split()
    return applied, digest


def test_freed_memory_is_reused_unless_turned_off_and_the_numbers_are_the_same():
    applied, digest = _run()
    assert applied == "True"  # glibc: the thresholds were set when the model was built
    off, digest_off = _run(LOYALTYSIM_SYSTEM_MALLOC="1")
    assert off == "False"
    assert digest_off == digest
