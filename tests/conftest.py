import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def strict_json(constant: str):
    raise ValueError(f"metrics.jsonl must be strict JSON, found {constant}")


def read_metrics(run_dir: str) -> list[dict]:
    """metrics.jsonl, parsed strictly: NaN or Infinity anywhere fails the test."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line, parse_constant=strict_json) for line in f]


def only_run_dir(cwd) -> str:
    (run_dir,) = glob.glob(os.path.join(str(cwd), "runs", "*"))
    return run_dir


@pytest.fixture
def run_script(tmp_path):
    """Run a script as a user would (a fresh interpreter, cwd = tmp_path); returns the
    CompletedProcess."""

    def run(script: str, *args: str, env: dict | None = None, check: bool = True):
        environment = {**os.environ, "PYTHONPATH": ROOT, "WANDB_MODE": "offline", **(env or {})}
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, script), *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{script} {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    return run
