"""Learning benchmarks: a grid of our scripts x env ids x seeds, run in parallel, resumable, then summarised.

    python benchmarks/run.py --name classic --scripts ppo_clip.py --envs CartPole-v1 Acrobot-v1 --seeds 1 2 3 4 5
    python benchmarks/run.py --name mujoco --scripts ppo_clip.py --envs HalfCheetah-v5 Hopper-v5 --seeds 1 2 3
    python benchmarks/run.py --name classic --scripts ppo_clip.py --envs CartPole-v1 --print-commands
    python benchmarks/run.py --name classic --summarize-only

Each cell (script, env id, seed) runs in its own working directory, benchmarks/runs/<name>/<script>/<env>/seed<N>/
(console output in output.log, command and wall time in cell.json), with the flags PRESETS holds for that script
and env, the env's budget (BUDGETS, or --total-timesteps) and the flags given after `--`. A cell is finished once
its metrics.jsonl has an eval row; finished cells are skipped, so the same command resumes an interrupted grid.
--jobs cells run at once (default: one per core; each script uses one torch thread). --print-commands prints,
per cell, the one command (from the repo root) that reproduces it, and runs nothing.

Then every cell under benchmarks/runs/<name>/ is summarised into benchmarks/results/<name>.json (cells already
there whose runs are not on this machine are kept: a grid grows across machines and days), and plot.py
draws benchmarks/results/<name>_<env>.png and writes benchmarks/results/<name>.md from it.
"""

import argparse
import contextlib
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from common import RESULTS, ROOT, code_version, machine_info, now, read_jsonl, split_argv

RUNS = os.path.join(ROOT, "benchmarks", "runs")
MUJOCO = "--num-envs 1 --num-steps 2048 --num-minibatches 32 --update-epochs 10 --learning-rate 3e-4 --ent-coef 0.0"
A2C_MUJOCO = "--num-envs 1 --num-steps 5 --gae-lambda 1.0 --ent-coef 0.0 --rmsprop --no-anneal-lr"
# Flags per script and env id ("": the script's defaults, CleanRL's classic-control preset).
# Each script adds its presets here; sweep_cell.py and tests/test_benchmarks.py read this table too.
PRESETS = {
    # reinforce.py: its defaults on classic control; on Pendulum vpg_baseline.py's preset without the critic (the
    # baseline is the one difference); on MuJoCo about 2000 steps of whole episodes per update at lr 1e-3
    # (Tianshou's REINFORCE MuJoCo settings). Not tuned on MuJoCo.
    "reinforce.py": {"CartPole-v1": "", "Acrobot-v1": "",
                     "Pendulum-v1": "--num-envs 8 --num-steps 200 --gamma 0.9 --learning-rate 3e-3",
                     **{env: "--num-envs 2 --num-steps 1000 --learning-rate 1e-3"
                        for env in ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")}},
    # vpg_baseline.py: its defaults on classic control; on Pendulum 8 episodes per update, gamma 0.9, lambda 0.9,
    # lr 3e-3 (tried here on seed 1; Spinning Up's settings below reached -1156 there); on MuJoCo reinforce.py's
    # step budget (about 2000 steps of whole episodes per update, lr 1e-3) with Spinning Up's lambda 0.97 and critic
    # (80 value steps at lr 1e-3): tried on seed 1 against Spinning Up's 4000 steps at lr 3e-4 (the grid `mujoco`),
    # confirmed on seeds 2-3 (the grid `vpg_step`, docs/vpg_baseline.md).
    "vpg_baseline.py": {"CartPole-v1": "", "Acrobot-v1": "",
                        "Pendulum-v1": "--num-envs 8 --num-steps 200 --gamma 0.9 --gae-lambda 0.9 --learning-rate 3e-3",
                        **{env: "--num-envs 2 --num-steps 1000 --learning-rate 1e-3 --gae-lambda 0.97"
                           for env in ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")}},
    "ppo_clip.py": {"CartPole-v1": "", "Acrobot-v1": "", "Pendulum-v1": MUJOCO,
                    "HalfCheetah-v5": MUJOCO, "Hopper-v5": MUJOCO, "Walker2d-v5": MUJOCO},
    "ppo_kl.py": {"CartPole-v1": "", "Acrobot-v1": "", "Pendulum-v1": MUJOCO,  # ppo_clip.py's, for a side by side
                  "HalfCheetah-v5": MUJOCO, "Hopper-v5": MUJOCO, "Walker2d-v5": MUJOCO},
    # actor_critic.py: its defaults (8 envs x 5 steps, TD(0)) on classic control; on Pendulum the rl-baselines3-zoo
    # A2C shape (8 envs x 8 steps, gamma 0.9, GAE 0.9, no entropy bonus) with lr 1.5e-3 (tried here on seed 1:
    # lr 7e-4 reached -351 / -237, last 100 / eval); on MuJoCo the rl-baselines3-zoo A2C shape that SB3 A2C runs
    # (1 env x 5 steps, lambda 1, no entropy bonus, RMSprop, constant lr 7e-4), setting for setting, so that the
    # side by side with sb3-A2C compares implementations (docs/actor_critic.md: the one-seed ablations).
    "actor_critic.py": {"CartPole-v1": "", "Acrobot-v1": "",
                        "Pendulum-v1": "--num-envs 8 --num-steps 8 --gamma 0.9 --gae-lambda 0.9 --ent-coef 0.0 "
                                       "--learning-rate 1.5e-3",
                        **{env: A2C_MUJOCO for env in ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")}},
    # npg.py and trpo.py: their defaults (the rl-baselines3-zoo TRPO CartPole shape, 2 envs x 512 steps) on classic
    # control; the zoo's TRPO MuJoCo preset (2 envs x 1024 steps, 20 critic epochs of minibatches of 128, 25 CG steps)
    # on Pendulum and MuJoCo; trpo_sb3norm.py (written by benchmarks/sb3norm_ablation.py) takes trpo.py's presets.
    **{script: {"CartPole-v1": "", "Acrobot-v1": "", **{
        env: "--num-envs 2 --num-steps 1024 --num-minibatches 16 --update-epochs 20 --cg-iters 25"
        for env in ("Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")}}
       for script in ("npg.py", "trpo.py", "trpo_sb3norm.py")},
}
# Peers trained on the same grid, same budgets and seeds: a cell named after the peer runs benchmarks/peers.py
# --exp-name in the peers' venv (the PEERS_PYTHON environment variable, default /tmp/peers-venv/bin/python; see
# benchmarks/README.md), which writes our metrics contract. Settings: peers.py --settings, per env id.
ZOO_TRPO_MUJOCO = {"n_envs": 2, "normalize": {"norm_obs": True, "norm_reward": True, "gamma": 0.99}, "n_steps": 1024,
                   "batch_size": 128, "gamma": 0.99, "gae_lambda": 0.95, "sub_sampling_factor": 1, "cg_max_steps": 25,
                   "cg_damping": 0.1, "n_critic_updates": 20, "learning_rate": 1e-3}  # rl-baselines3-zoo trpo.yml
# rl-baselines3-zoo a2c.yml on MuJoCo: `normalize: true` and SB3's A2C defaults otherwise (1 env x 5 steps, RMSprop
# alpha 0.99 eps 1e-5, lr 7e-4 constant, lambda 1, no entropy bonus, vf_coef 0.5, grad clip 0.5, 64x64 tanh).
ZOO_A2C_MUJOCO = {"n_envs": 1, "normalize": {"norm_obs": True, "norm_reward": True, "gamma": 0.99}}
MUJOCO_ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
PEERS = {"sb3-contrib-TRPO": ("trpo", {env: ZOO_TRPO_MUJOCO for env in MUJOCO_ENVS}),
         "sb3-A2C": ("a2c", {env: ZOO_A2C_MUJOCO for env in MUJOCO_ENVS})}
PEERS_PYTHON = os.environ.get("PEERS_PYTHON", "/tmp/peers-venv/bin/python")
BUDGETS = {"CartPole-v1": 500_000, "Acrobot-v1": 500_000, "Pendulum-v1": 1_000_000,
           "HalfCheetah-v5": 1_000_000, "Hopper-v5": 1_000_000, "Walker2d-v5": 1_000_000}
THRESHOLDS = {"CartPole-v1": 475, "Acrobot-v1": -100, "Pendulum-v1": -200}  # returns that count as solved
THRESHOLD_WINDOW = 20  # episodes in the rolling mean that must reach the threshold
CURVE_POINTS = 200  # most points kept of a learning curve


@dataclass(frozen=True, order=True)
class Cell:
    script: str
    env: str
    seed: int

    def dir(self, bench_dir: str) -> str:
        return os.path.join(bench_dir, self.script, self.env, f"seed{self.seed}")

    def __str__(self) -> str:
        return f"{self.script} {self.env} seed{self.seed}"


def parse_args():
    ours, extra = split_argv(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="names benchmarks/runs/<name>/ and the result files")
    parser.add_argument("--scripts", nargs="+", help="our scripts, relative to the repo root")
    parser.add_argument("--envs", nargs="+", help="Gymnasium env ids")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--total-timesteps", type=int, help="one budget for every env (default: BUDGETS per env)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="cells run at once")
    parser.add_argument("--print-commands", action="store_true", help="print each cell's command, run nothing")
    parser.add_argument("--summarize-only", action="store_true", help="summarise the cells there are, run nothing")
    args = parser.parse_args(ours)
    args.extra = extra
    if not re.fullmatch(r"[\w.-]+", args.name):
        parser.error(f"--name {args.name!r}: use letters, digits, '_', '-' and '.' only")
    if not args.summarize_only and not (args.scripts and args.envs):
        parser.error("--scripts and --envs are required (unless --summarize-only)")
    return args


def check_grid(scripts: list[str], envs: list[str], total_timesteps: int | None) -> None:
    """One-line errors for what the grid cannot run, before anything starts."""
    for script in scripts:
        if script in PEERS:
            if missing := [env for env in envs if env not in PEERS[script][1]]:
                sys.exit(f"no settings for the peer {script} on {', '.join(missing)}: add them to PEERS in run.py")
            if not os.access(PEERS_PYTHON, os.X_OK):
                sys.exit(f"the peer {script} needs the peers' Python: none at PEERS_PYTHON={PEERS_PYTHON} "
                         "(see benchmarks/README.md)")
            continue
        if not os.path.isfile(os.path.join(ROOT, script)):
            sys.exit(f"no script {script} in the repo root (nor a peer in PEERS: {', '.join(PEERS)})")
        for env in envs:
            if env not in PRESETS.get(script, {}):
                sys.exit(f"no preset for {script} on {env}: add one to PRESETS in benchmarks/run.py")
    if total_timesteps is None and (missing := [env for env in envs if env not in BUDGETS]):
        sys.exit(f"no default budget for {', '.join(missing)}: give --total-timesteps or add it to BUDGETS")


def cell_command(cell: Cell, cwd: str, name: str, total_timesteps: int | None, extra: list[str]) -> list[str]:
    """The training command of a cell, run from its directory cwd ("python": the interpreter running this;
    "PEERS_PYTHON": the peers' one)."""
    budget = str(total_timesteps or BUDGETS[cell.env])
    if cell.script in PEERS:
        algo, settings = PEERS[cell.script]
        return ["PEERS_PYTHON", os.path.relpath(os.path.join(ROOT, "benchmarks", "peers.py"), cwd), "--algo", algo,
                "--env-id", cell.env, "--seed", str(cell.seed), "--total-timesteps", budget, "--exp-name", name,
                "--settings", json.dumps(settings[cell.env]), *extra]
    return ["python", os.path.relpath(os.path.join(ROOT, cell.script), cwd), "--env-id", cell.env,
            "--seed", str(cell.seed), "--total-timesteps", budget,
            "--exp-name", name, *shlex.split(PRESETS[cell.script][cell.env]), *extra]


def reproduce_line(cmd: list[str], cwd: str) -> str:
    """The one shell line, run from the repo root, that reruns a cell."""
    where = shlex.quote(os.path.relpath(cwd, ROOT))
    command = f"$PEERS_PYTHON {shlex.join(cmd[1:])}" if cmd[0] == "PEERS_PYTHON" else shlex.join(cmd)
    return f"mkdir -p {where} && cd {where} && {command}"


def read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_json(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def is_finished(metrics_path: str) -> bool:
    return any("eval/episodic_return" in row for row in read_jsonl(metrics_path))


def cell_metrics(cwd: str) -> str | None:
    """The cell's metrics.jsonl: its newest finished run, else its newest run, else None."""
    paths = sorted(glob.glob(os.path.join(cwd, "runs", "*", "metrics.jsonl")), key=os.path.getmtime)
    finished = [path for path in paths if is_finished(path)]
    return (finished or paths or [None])[-1]


def run_cell(cmd: list[str], cwd: str, capture: bool = True) -> int:
    """Runs a cell's command in cwd (its output to cwd/output.log when capture); records it in cwd/cell.json."""
    os.makedirs(cwd, exist_ok=True)
    record = {"command": reproduce_line(cmd, cwd), "date": now()}
    start = time.time()
    with open(os.path.join(cwd, "output.log"), "w") if capture else contextlib.nullcontext() as log:
        python = PEERS_PYTHON if cmd[0] == "PEERS_PYTHON" else sys.executable
        code = subprocess.run([python, *cmd[1:]], cwd=cwd, stdout=log, stderr=subprocess.STDOUT).returncode
    write_json(os.path.join(cwd, "cell.json"), {**record, "wall_time_s": round(time.time() - start, 1),
                                                "returncode": code})
    return code


def clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02}:{s:02}"


def run_grid(todo: list[tuple[Cell, str, list[str]]], jobs: int) -> list[Cell]:
    """Runs the cells, `jobs` at a time, with a line per start and finish; returns the cells that failed."""
    start, lock, counts = time.time(), threading.Lock(), {"start": 0, "finish": 0}

    def say(event: str, cell: Cell, detail: str = "") -> None:
        with lock:
            counts[event] += 1
            print(f"{clock(time.time() - start)} {event:6} [{counts[event]}/{len(todo)}] {cell}{detail}", flush=True)

    def one(item) -> Cell | None:
        cell, cwd, cmd = item
        shutil.rmtree(os.path.join(cwd, "runs"), ignore_errors=True)  # what an unfinished attempt left
        say("start", cell)
        cell_start = time.time()
        code = run_cell(cmd, cwd)
        failed = f", FAILED (exit {code}): see {os.path.relpath(cwd, ROOT)}/output.log" if code else ""
        say("finish", cell, f" in {clock(time.time() - cell_start)}{failed}")
        return cell if code else None

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        return [cell for cell in pool.map(one, todo) if cell]
    except KeyboardInterrupt:
        pool.shutdown(cancel_futures=True)
        sys.exit("interrupted: run the same command again to resume")


def plan(args, bench_dir: str) -> list[tuple[Cell, str, list[str]]]:
    """The grid's cells, each with its directory and command."""
    check_grid(args.scripts, args.envs, args.total_timesteps)
    cells = [Cell(script, env, seed) for script in args.scripts for env in args.envs for seed in args.seeds]
    return [(cell, cwd, cell_command(cell, cwd, args.name, args.total_timesteps, args.extra))
            for cell in cells for cwd in [cell.dir(bench_dir)]]


def launch(args, bench_dir: str, cells: list[tuple[Cell, str, list[str]]]) -> list[Cell]:
    """Runs the cells not yet finished; returns those that failed."""
    todo = []
    for cell, cwd, cmd in cells:
        metrics, recorded = cell_metrics(cwd), read_json(os.path.join(cwd, "cell.json")).get("command")
        if not (metrics and is_finished(metrics)):
            todo.append((cell, cwd, cmd))
        elif recorded not in (None, reproduce_line(cmd, cwd)):
            sys.exit(f"{cell} finished with another command ({recorded}): use a new --name, "
                     f"or delete {os.path.relpath(cwd, ROOT)}")
        else:
            print(f"skip {cell}: finished")
    if not todo:
        return []
    os.makedirs(bench_dir, exist_ok=True)
    with open(os.path.join(bench_dir, "launches.jsonl"), "a") as f:
        f.write(json.dumps(launch_record(args, len(todo))) + "\n")
    print(f"{len(todo)} cell(s) to run, {args.jobs} at a time")
    return run_grid(todo, args.jobs)


def launch_record(args, cells: int) -> dict:
    """What a results file says about a launch: its command from the repo root, code and machine."""
    record = {"date": now(), "command": shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]]),
              "cells_run": cells, "jobs": args.jobs, "code": code_version(*args.scripts, "gae.py"),
              "machine": machine_info()}
    if any(script in PEERS for script in args.scripts):  # the peers' package versions
        versions = subprocess.run([PEERS_PYTHON, os.path.join(ROOT, "benchmarks", "peers.py"), "--versions"],
                                  capture_output=True, text=True).stdout
        record["peers"] = json.loads(versions) if versions.strip() else None
    return record


def downsample(episodes: list[tuple[int, float]], points: int = CURVE_POINTS) -> list[list]:
    """Learning curve of at most `points` points: the episodes binned by global step into `points` bins of equal
    width, each non-empty bin giving (mean global step, mean return) of its episodes; fewer episodes: unchanged."""
    if len(episodes) <= points:
        return [[step, ret] for step, ret in episodes]
    steps, returns = np.array(episodes, dtype=float).T
    edges = np.linspace(steps[0], steps[-1], points + 1)
    bins = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, points - 1)
    counts = np.bincount(bins, minlength=points)
    kept = counts > 0
    mean_steps = np.bincount(bins, steps, points)[kept] / counts[kept]
    mean_returns = np.bincount(bins, returns, points)[kept] / counts[kept]
    return [[int(round(step)), round(float(ret), 3)] for step, ret in zip(mean_steps, mean_returns)]


def steps_to_threshold(episodes: list[tuple[int, float]], threshold: float | None,
                       window: int = THRESHOLD_WINDOW) -> int | None:
    """First global step at which the mean return of the last `window` episodes reaches threshold (None: never)."""
    if threshold is None or len(episodes) < window:
        return None
    steps, returns = np.array(episodes, dtype=float).T
    sums = np.cumsum(np.concatenate([[0.0], returns]))
    reached = np.flatnonzero(sums[window:] - sums[:-window] >= threshold * window)  # sums: exact for integer returns
    return int(steps[reached[0] + window - 1]) if reached.size else None


def summarize_cell(cell: Cell, cwd: str) -> dict:
    """A cell's figures from its metrics.jsonl (null values skipped) and its cell.json."""
    path = cell_metrics(cwd)
    rows = read_jsonl(path) if path else []

    def values(key: str) -> list:
        return [row[key] for row in rows if row.get(key) is not None]

    episodes = [(row["global_step"], row["charts/episodic_return"]) for row in rows
                if row.get("charts/episodic_return") is not None]
    last_100 = [ret for _, ret in episodes[-100:]]
    evals, sps = values("eval/episodic_return"), values("charts/SPS")
    return {"script": cell.script, "env": cell.env, "seed": cell.seed,
            "steps": rows[-1]["global_step"] if rows else 0,
            "finished": any("eval/episodic_return" in row for row in rows), "episodes": len(episodes),
            "last100_return": float(np.mean(last_100)) if last_100 else None,
            "eval_return": evals[-1] if evals else None, "final_sps": sps[-1] if sps else None,
            "wall_time_s": read_json(os.path.join(cwd, "cell.json")).get("wall_time_s"),
            "steps_to_threshold": steps_to_threshold(episodes, THRESHOLDS.get(cell.env)),
            "metrics": os.path.relpath(path, ROOT) if path else None, "curve": downsample(episodes)}


def find_cells(bench_dir: str) -> list[tuple[Cell, str]]:
    """Every cell directory under benchmarks/runs/<name>/, in (script, env, seed) order."""
    found = []
    for cwd in glob.glob(os.path.join(bench_dir, "*", "*", "seed*")):
        script, env, seed = os.path.relpath(cwd, bench_dir).split(os.sep)
        if seed[len("seed"):].isdigit():
            found.append((Cell(script, env, int(seed[len("seed"):])), cwd))
    return sorted(found)


def summarize(name: str, bench_dir: str, previous: dict | None = None) -> dict:
    """One benchmark's results: its cells, and the command, code and machine of its latest launch. The cells and
    launches of `previous` (the committed results file) whose runs are not under bench_dir are kept, so results
    gathered on other machines or days (raw runs stay out of git) survive a summary here; a cell run here wins."""
    previous = previous or {}
    found = find_cells(bench_dir) if os.path.isdir(bench_dir) else []
    here = {(cell.script, cell.env, cell.seed) for cell, _ in found}
    cells = sorted([c for c in previous.get("cells", []) if (c["script"], c["env"], c["seed"]) not in here] +
                   [summarize_cell(cell, cwd) for cell, cwd in found],
                   key=lambda c: (c["script"], c["env"], c["seed"]))
    if not cells:
        sys.exit(f"no cells under {os.path.relpath(bench_dir, ROOT)}")
    launches_path = os.path.join(bench_dir, "launches.jsonl")
    launches = previous.get("launches", []) + (read_jsonl(launches_path) if os.path.isfile(launches_path) else [])
    launches = sorted({json.dumps(launch, sort_keys=True): launch for launch in launches}.values(),
                      key=lambda launch: launch["date"])
    scripts = sorted({cell["script"] for cell in cells})
    latest = launches[-1] if launches else {"command": None, "code": code_version(*scripts, "gae.py"),
                                            "machine": machine_info()}
    return {"name": name, "date": now(), "command": latest.get("command"), "code": latest.get("code"),
            "machine": latest.get("machine"), "scripts": scripts, "envs": sorted({cell["env"] for cell in cells}),
            "seeds": sorted({cell["seed"] for cell in cells}), "thresholds": THRESHOLDS,
            "threshold_window": THRESHOLD_WINDOW, "launches": launches, "cells": cells}


def main() -> None:
    args = parse_args()
    bench_dir = os.path.join(RUNS, args.name)
    cells = [] if args.summarize_only else plan(args, bench_dir)
    if args.print_commands:
        print("\n".join(reproduce_line(cmd, cwd) for _, cwd, cmd in cells))
        return
    failed = launch(args, bench_dir, cells)
    results_path = os.path.join(RESULTS, f"{args.name}.json")
    write_json(results_path, summarize(args.name, bench_dir, read_json(results_path)))
    print(f"wrote {os.path.relpath(results_path, ROOT)}")
    import plot  # matplotlib: needed for the summary only

    plot.main([results_path])
    if failed:
        sys.exit(f"{len(failed)} cell(s) failed: {', '.join(map(str, failed))}")


if __name__ == "__main__":
    main()
