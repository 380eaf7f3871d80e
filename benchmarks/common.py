"""What speed.py and learning.py record next to their figures: when, on what machine, from which code."""

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def machine_info() -> dict:
    """CPU, usable cores (as `nproc` counts them) and the versions of this Python's packages."""
    return {"cpu": cpu_model(), "nproc": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ("torch", "gymnasium", "numpy")}}


def git_state(path: str) -> str:
    """Commit of the repo, and whether `path` (relative to the repo root) differs from it."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (f" ({path} modified)" if git("status", "--porcelain", "--", path) else "")
