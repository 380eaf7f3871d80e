"""What the benchmark tools share: when, on what machine and from which code a figure was made; argv and
metrics.jsonl parsing. Imported by speed.py, run.py, plot.py, sweep_cell.py and profile_run.py."""

import json
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


def code_version(*paths: str) -> dict:
    """Short commit of the repo, and which of `paths` (relative to the repo root) differ from it or are untracked."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "modified": [path for path in paths if git("status", "--porcelain", "--", path)]}


def git_state(*paths: str) -> str:
    """code_version() in words: "abc1234", or "abc1234 (ppo_clip.py modified)"."""
    code = code_version(*paths)
    return code["commit"] + (f" ({', '.join(code['modified'])} modified)" if code["modified"] else "")


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """A tool's own arguments, and those after `--` (passed on to the training scripts)."""
    return (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])


def read_jsonl(path: str) -> list[dict]:
    """The complete lines of a JSON-lines file (a run killed mid-write may leave half a line at the end)."""
    with open(path) as f:
        return [json.loads(line) for line in f.read().split("\n")[:-1] if line.strip()]
