"""Run a test script in a fresh Python with N XLA CPU devices and read its result back.

``--xla_force_host_platform_device_count`` must be set before JAX starts, and the pytest
process already has its one CPU device, so multi-device checks run in a subprocess that prints
one line ``RESULT <json>``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_on_cpu_devices(script: str, devices: int, *args: str, timeout: int = 600):
    """Run ``python -c script *args`` from the repository root with ``devices`` CPU devices;
    return the JSON of its last ``RESULT`` line (the assertion names stderr's tail)."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])
