"""One cell of the wandb sweep in benchmarks/sweep.yaml: the command benchmarks/run.py would run for it
(PRESETS, budgets and cell directory from run.py), plus --track so that the run reports to the sweep.

    wandb sweep benchmarks/sweep.yaml         # once; prints the sweep id
    wandb agent <entity>/<project>/<id>       # on each machine, from the repo root, with the project's venv active

The agent calls `python benchmarks/sweep_cell.py --script=ppo_clip.py --env_id=CartPole-v1 --seed=1`; by hand:

    python benchmarks/sweep_cell.py --script ppo_clip.py --env-id CartPole-v1 --seed 1 [--total-timesteps N] [-- flags]

The cell runs in <runs-dir>/<name>/<script>/<env>/seed<N>/ (default benchmarks/runs/sweep/...), so
`python benchmarks/run.py --name sweep --summarize-only` summarises the cells a machine ran. Exits with the
script's exit code.
"""

import argparse
import os
import sys

import run
from common import split_argv


def main() -> None:
    ours, extra = split_argv(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", required=True)
    parser.add_argument("--env-id", "--env_id", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--total-timesteps", "--total_timesteps", type=int, help="default: run.py's BUDGETS")
    parser.add_argument("--name", default="sweep", help="benchmark name: the cell's directory and --exp-name")
    parser.add_argument("--runs-dir", default=run.RUNS, help="where the benchmark directories are")
    args = parser.parse_args(ours)
    run.check_grid([args.script], [args.env_id], args.total_timesteps)
    cell = run.Cell(args.script, args.env_id, args.seed)
    cwd = cell.dir(os.path.join(args.runs_dir, args.name))
    cmd = run.cell_command(cell, cwd, args.name, args.total_timesteps, [*extra, "--track"])
    print(f"{cell}: {run.reproduce_line(cmd, cwd)}", flush=True)
    sys.exit(run.run_cell(cmd, cwd, capture=False))


if __name__ == "__main__":
    main()
