"""Environment steps per second: our scripts side by side with CleanRL's ppo.py and with the bare vector env.

Variants run one at a time, never two at once, interleaved repeat by repeat so that a drift in the
machine's speed hits every variant alike; the table reports medians. Each training run's SPS is its own
final figure (steps / training seconds, start-up excluded): CleanRL's last "SPS:" line, our last
charts/SPS row in metrics.jsonl. Runs happen in a temporary directory, so nothing lands in the repo.

    python benchmarks/speed.py                                   # CartPole-v1, 4 envs x 128 steps
    python benchmarks/speed.py --env-id HalfCheetah-v5           # MuJoCo preset: ours and the env only
    python benchmarks/speed.py --scripts ppo_clip.py trpo.py -- --eval-episodes 0   # flags after -- go to ours

CleanRL is not part of this project: fetch its cleanrl/ppo.py yourself and give a Python that can run it
(--cleanrl-ppo, --cleanrl-python), or its rows are skipped.
"""

import argparse
import contextlib
import functools
import glob
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import gymnasium as gym

from common import RESULTS, ROOT, git_state, machine_info, now

# Per env: vector envs, steps per rollout, and our scripts' flags for that preset (CartPole: their defaults).
PRESETS = {
    "CartPole-v1": (4, 128, []),
    "HalfCheetah-v5": (1, 2048, ["--num-envs", "1", "--num-steps", "2048", "--num-minibatches", "32",
                                 "--update-epochs", "10", "--learning-rate", "3e-4", "--ent-coef", "0.0"]),
}
CLEANRL_1 = "CleanRL ppo.py, OMP_NUM_THREADS=1"
CLEANRL_N = "CleanRL ppo.py, default threads"
RAW_ENV = "raw SyncVectorEnv, random actions"
# A child's thread count is set per variant, not inherited from this shell.
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def run(cmd: list[str], cwd: str, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def cleanrl_sps(cmd: list[str], env: dict, cwd: str) -> int:
    return int(re.findall(r"^SPS: (\d+)$", run(cmd, cwd, env), re.MULTILINE)[-1])


def ours_sps(cmd: list[str], cwd: str) -> int:
    run(cmd, cwd, BASE_ENV)
    [path] = glob.glob(os.path.join(cwd, "runs", "*", "metrics.jsonl"))
    with open(path) as f:
        return [row["charts/SPS"] for row in map(json.loads, f) if "charts/SPS" in row][-1]


def raw_env_sps(env_id: str, num_envs: int, total_timesteps: int, cwd: str) -> int:
    """The env alone, in this process: a ceiling for any training script."""
    with contextlib.chdir(cwd):  # MuJoCo writes MUJOCO_LOG.TXT into the current directory
        envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * num_envs,
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        envs.action_space.seed(0)
        actions = [envs.action_space.sample() for _ in range(1000)]
        envs.reset(seed=0)
        iterations = total_timesteps // num_envs
        start = time.perf_counter()
        for i in range(iterations):
            envs.step(actions[i % len(actions)])
        elapsed = time.perf_counter() - start
        envs.close()
    return int(iterations * num_envs / elapsed)


def cleanrl_info(python: str, script: str) -> dict:
    """Versions in CleanRL's venv, and the git blob id of its ppo.py (`git log --find-object=ID` finds it)."""
    code = "from importlib.metadata import version as v; print(v('torch'), v('gymnasium'), v('numpy'))"
    torch_v, gym_v, np_v = run([python, "-c", code], ROOT, BASE_ENV).split()
    blob = subprocess.run(["git", "hash-object", script], capture_output=True, text=True).stdout.strip()
    return {"ppo_py": script, "ppo_py_git_blob": blob, "python": python, "torch": torch_v, "gymnasium": gym_v,
            "numpy": np_v}


def variants(args, extra: list[str]) -> dict:
    """Name -> function(cwd) returning that run's SPS, in the order they run within a repeat."""
    num_envs, _, preset = PRESETS[args.env_id]
    steps = str(args.total_timesteps)
    found = {}
    if not os.path.isfile(args.cleanrl_ppo) or not os.path.isfile(args.cleanrl_python):
        print(f"skipping CleanRL: {args.cleanrl_ppo} or {args.cleanrl_python} not found (see benchmarks/README.md)")
    elif args.env_id != "CartPole-v1":
        print(f"skipping CleanRL: its ppo.py is discrete-only, {args.env_id} is continuous")
    else:
        cmd = [args.cleanrl_python, args.cleanrl_ppo, "--env-id", args.env_id, "--seed", "1",
               "--total-timesteps", steps, "--no-cuda"]
        found[CLEANRL_1] = functools.partial(cleanrl_sps, cmd, {**BASE_ENV, "OMP_NUM_THREADS": "1"})
        found[CLEANRL_N] = functools.partial(cleanrl_sps, cmd, BASE_ENV)
    for script in args.scripts:
        path = os.path.join(ROOT, script)
        if not os.path.isfile(path):
            print(f"skipping {script}: {path} not found")
            continue
        cmd = [sys.executable, path, "--env-id", args.env_id, "--seed", "1", "--total-timesteps", steps,
               "--exp-name", "speed", *preset, *extra]
        found[f"ours: {script}"] = functools.partial(ours_sps, cmd)
    found[RAW_ENV] = functools.partial(raw_env_sps, args.env_id, num_envs, args.total_timesteps)
    return found


def measure(todo: dict, repeats: int) -> dict:
    sps = {name: [] for name in todo}
    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        for repeat in range(1, repeats + 1):
            for name, fn in todo.items():
                sps[name].append(fn(tempfile.mkdtemp(dir=tmp)))
                print(f"repeat {repeat}/{repeats}  {name}: {sps[name][-1]} SPS", flush=True)
    return sps


def ratios(medians: dict) -> dict:
    out = {}
    for name in [n for n in medians if n.startswith("ours: ")]:
        script = name.removeprefix("ours: ")
        for ref in (CLEANRL_1, CLEANRL_N, RAW_ENV):
            if ref in medians:
                out[f"{script} / {ref}"] = medians[name] / medians[ref]
    return out


def markdown(report: dict) -> str:
    num_envs, num_steps = report["num_envs"], report["num_steps"]
    m = report["machine"]
    lines = [f"{report['env_id']}, {num_envs} env(s) x {num_steps} steps, {report['total_timesteps']} steps per run, "
             f"median of {report['repeats']}; {m['cpu']}, nproc {m['nproc']}, torch {m['torch']}, "
             f"gymnasium {m['gymnasium']}; {report['date']}", "", f"`{report['command']}`", "",
             "| variant | median SPS | runs |", "|---|---:|---|"]
    lines += [f"| {name} | {report['median_sps'][name]:.0f} | {', '.join(map(str, runs))} |"
              for name, runs in report["sps"].items()]
    if report["ratios"]:
        lines += ["", "| ratio of medians | |", "|---|---:|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in report["ratios"].items()]
    return "\n".join(lines)


def main() -> None:
    argv = sys.argv[1:]
    ours_argv, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="CartPole-v1", choices=PRESETS)
    parser.add_argument("--total-timesteps", type=int, default=100000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scripts", nargs="+", default=["ppo_clip.py"], help="our scripts, relative to the repo root")
    parser.add_argument("--cleanrl-ppo", default="/tmp/cleanrl/ppo.py")
    parser.add_argument("--cleanrl-python", default="/tmp/cleanrl-venv/bin/python")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/speed_<env>.json, e.g. speed_cartpole.json)")
    args = parser.parse_args(ours_argv)
    # Absolute, since every run's working directory is a temporary one.
    args.cleanrl_ppo = os.path.abspath(args.cleanrl_ppo)
    args.cleanrl_python = os.path.abspath(shutil.which(args.cleanrl_python) or args.cleanrl_python)

    todo = variants(args, extra)
    sps = measure(todo, args.repeats)
    medians = {name: statistics.median(runs) for name, runs in sps.items()}
    num_envs, num_steps, preset = PRESETS[args.env_id]
    ours = [name.removeprefix("ours: ") for name in todo if name.startswith("ours: ")]
    report = {
        "command": shlex.join([sys.executable, *sys.argv]), "cwd": os.getcwd(), "date": now(),
        "machine": machine_info(), "code": {script: git_state(script) for script in ours},
        "env_id": args.env_id, "num_envs": num_envs, "num_steps": num_steps, "our_flags": preset + extra,
        "total_timesteps": args.total_timesteps, "repeats": args.repeats,
        "sps": sps, "median_sps": medians, "ratios": ratios(medians),
    }
    if CLEANRL_1 in todo:
        report["cleanrl"] = cleanrl_info(args.cleanrl_python, args.cleanrl_ppo)
    table = markdown(report)
    print("\n" + table)
    out = args.out or os.path.join(RESULTS, f"speed_{args.env_id.split('-')[0].lower()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({**report, "markdown": table}, f, indent=2)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
