"""Mutation check: make each listed one-line mistake in a copy of the repo and confirm the test
suite fails.

    python tests/mutants.py                      # every mutant (minutes each; in a temporary copy)
    python tests/mutants.py --only ppo_clip      # the mutants whose names contain the string
    python tests/mutants.py --list               # what would be run

Not part of the pytest suite (it runs the suite once per mutant). Each tests/test_<name>.py lists
the plausible one-line mistakes of its file in MUTANTS: (name, file, exact text, its replacement[,
text, replacement ...]); this collects them all. Exit status 1 if any mutant survives (the suite
passed with the mistake in place)."""

import argparse
import glob
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]


def all_mutants() -> list[tuple]:
    modules = sorted(
        os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "tests", "test_*.py"))
    )
    return [m for name in modules for m in getattr(importlib.import_module(name), "MUTANTS", [])]


def run_mutant(mutant: tuple, pytest_args: list[str]) -> bool:
    """True if the suite fails with the mutation in place (the mutant is killed)."""
    name, path, replacements = mutant[0], mutant[1], list(zip(mutant[2::2], mutant[3::2]))
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        # the whole checkout but its caches and raw runs: the tests read the docs and benchmarks/
        # too
        shutil.copytree(
            ROOT,
            tmp,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "runs", "wandb", "__pycache__", ".pytest_cache", "*.pt"
            ),
        )
        with open(os.path.join(tmp, path)) as f:
            source = f.read()
        for old, new in replacements:
            if source.count(old) != 1:
                sys.exit(
                    f"error: mutant {name!r}: the text to replace occurs {source.count(old)} "
                    f"times in {path}"
                )
            source = source.replace(old, new)
        with open(os.path.join(tmp, path), "w") as f:
            f.write(source)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *pytest_args],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    print(
        f"{'killed ' if proc.returncode else 'SURVIVED'}  {name}"
        + (f"  <- {failed[0][7:]}" if failed else ""),
        flush=True,
    )
    return proc.returncode != 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="run the mutants whose name contains this")
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "pytest_args", nargs="*", default=["tests"], help="what pytest runs (default: tests)"
    )
    args = parser.parse_args()
    todo = [m for m in all_mutants() if args.only in m[0]]
    if args.list:
        print("\n".join(m[0] for m in todo))
        return
    survivors = [m[0] for m in todo if not run_mutant(m, args.pytest_args)]
    print(
        f"{len(todo) - len(survivors)}/{len(todo)} mutants killed"
        + (f"; survived: {survivors}" if survivors else "")
    )
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
