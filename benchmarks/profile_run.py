"""Where a script spends its time: cProfile of a short training run, the top functions by own time.

    python benchmarks/profile_run.py ppo_clip.py --top 25 -- --env-id HalfCheetah-v5 --total-timesteps 8192 \\
        --num-envs 1 --num-steps 2048 --num-minibatches 32 --update-epochs 10 --learning-rate 3e-4 --ent-coef 0.0

Flags after `--` go to the script. The run happens in a temporary directory (nothing lands in the repo);
the profile table is printed, and written to --out when given.
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile

from common import ROOT, git_state, machine_info, now

sys.path.insert(0, ROOT)


def main() -> None:
    argv = sys.argv[1:]
    ours, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", help="one of our scripts, relative to the repo root")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(ours)
    import tyro

    module = __import__(args.script.removesuffix(".py"))
    script_args = tyro.cli(module.Args, args=["--eval-episodes", "0", *extra])
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), contextlib.redirect_stdout(io.StringIO()):
        profiler.runcall(module.train, script_args)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime")
    stats.print_stats(args.top)
    m = machine_info()
    header = (f"# profile of {args.script} {' '.join(extra)}\n# {now()}, code {git_state(args.script)}, {m['cpu']}, "
              f"nproc {m['nproc']}, torch {m['torch']}\n# command: python benchmarks/profile_run.py {' '.join(argv)}\n")
    body = header + "\n".join(line for line in text.getvalue().splitlines() if line.strip() and os.sep + "work" not in line)
    print(body)
    if args.out:
        with open(args.out, "w") as f:
            f.write(body + "\n")


if __name__ == "__main__":
    main()
