"""The ladder in one picture per env: each rung's learning curve at its documented preset, taken from the
results files of run.py that hold it (mean over finished seeds, min-max band).

    python benchmarks/plot_ladder.py                      # the MuJoCo ladder: benchmarks/results/ladder_<env>.png

A rung is RESULTS_FILE:SCRIPT (the file's cells of that script); LADDER below lists the committed choice.
"""

import argparse
import json
import os

from plot import plot_env

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# Each rung at the MuJoCo preset its page documents: reinforce.py's 1M-step preset, vpg_baseline.py at the same
# step budget (its grid `vpg_step`), actor_critic.py at SB3 A2C's zoo settings, the rest at their main MuJoCo
# presets (benchmarks/run.py).
LADDER = ["mujoco.json:reinforce.py", "vpg_step.json:vpg_baseline.py", "mujoco_a2c.json:actor_critic.py",
          "mujoco.json:npg.py", "mujoco.json:trpo.py", "mujoco.json:ppo_kl.py", "mujoco.json:ppo_clip.py"]
ENVS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"]


def ladder_results(rungs: list[str]) -> dict:
    """The rungs' cells gathered into one results dict of run.py's shape, for plot.plot_env."""
    cells = []
    for rung in rungs:
        name, script = rung.split(":")
        with open(os.path.join(RESULTS, name)) as f:
            cells += [c for c in json.load(f)["cells"] if c["script"] == script]
    return {"name": "the ladder", "thresholds": {}, "cells": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rungs", nargs="+", default=LADDER, help="RESULTS_FILE:SCRIPT per rung")
    parser.add_argument("--envs", nargs="+", default=ENVS)
    args = parser.parse_args()
    results = ladder_results(args.rungs)
    for env in args.envs:
        path = os.path.join(RESULTS, f"ladder_{env}.png")
        plot_env(results, env, path)
        print(f"wrote {os.path.relpath(path, os.path.dirname(HERE))}")


if __name__ == "__main__":
    main()
