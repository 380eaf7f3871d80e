"""Learning quality of one of our scripts over several seeds.

Per seed: the mean return of the last 100 training episodes and the final deterministic evaluation
(eval/episodic_return); across finished seeds: mean +- std (population, ddof=0). Writes
benchmarks/results/<tag>.json, <tag>.md and <tag>.png (learning curves, rolling mean over 20 episodes).

    python benchmarks/learning.py --tag ppo_clip_cartpole --env-id CartPole-v1 --total-timesteps 500000
    python benchmarks/learning.py --tag ppo_clip_halfcheetah --env-id HalfCheetah-v5 --total-timesteps 1000000 \\
        -- --num-envs 1 --num-steps 2048 --num-minibatches 32 --update-epochs 10 --learning-rate 3e-4 --ent-coef 0.0
    python benchmarks/learning.py --tag ppo_clip_cartpole --summarize-only

Flags after `--` go to the script. Runs execute in benchmarks/results/runs-<tag>/ (the script writes
runs/<run>/metrics.jsonl there; that is all that is kept). A seed that already has a finished run in that
directory is not run again, so an interrupted set can be resumed, and --summarize-only can summarise a
partial one; use a new --tag (or delete runs-<tag>/) to start afresh.
"""

import argparse
import contextlib
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common import RESULTS, ROOT, git_state, machine_info, now  # noqa: E402

SMOOTHING = 20  # episodes in the plot's rolling mean


def parse_args():
    argv = sys.argv[1:]
    ours, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", required=True, help="names runs-<tag>/ and the result files")
    parser.add_argument("--script", default="ppo_clip.py", help="relative to the repo root")
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--total-timesteps", type=int, default=500000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each script uses one torch thread)")
    parser.add_argument("--summarize-only", action="store_true", help="re-read runs-<tag>/, run nothing")
    args = parser.parse_args(ours)
    args.extra = extra
    return args


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def latest_runs(runs_dir: str) -> dict[int, str]:
    """Seed -> metrics.jsonl of its newest run (run dirs are {env_id}__{exp_name}__{seed}__{unixtime})."""
    runs = {}
    for path in glob.glob(os.path.join(runs_dir, "runs", "*", "metrics.jsonl")):
        seed, started = map(int, os.path.basename(os.path.dirname(path)).rsplit("__", 2)[1:])
        if seed not in runs or started > runs[seed][0]:
            runs[seed] = (started, path)
    return {seed: path for seed, (_, path) in sorted(runs.items())}


def is_finished(path: str) -> bool:
    return any("eval/episodic_return" in row for row in read_jsonl(path))


def run_seed(args, runs_dir: str, seed: int) -> bool:
    cmd = [sys.executable, os.path.join(ROOT, args.script), "--env-id", args.env_id, "--seed", str(seed),
           "--total-timesteps", str(args.total_timesteps), "--exp-name", args.tag, *args.extra]
    log_path = os.path.join(runs_dir, f"seed{seed}.log")
    with open(log_path, "w") as log:
        code = subprocess.run(cmd, cwd=runs_dir, stdout=log, stderr=subprocess.STDOUT).returncode
    if code == 0:
        os.remove(log_path)  # metrics.jsonl holds everything worth keeping
        print(f"seed {seed}: done", flush=True)
    else:
        print(f"seed {seed}: exit code {code}, output kept in {log_path}", flush=True)
    return code == 0


def launch(args, runs_dir: str) -> bool:
    """Runs the seeds without a finished run; False if any of them failed."""
    os.makedirs(runs_dir, exist_ok=True)
    finished = {seed for seed, path in latest_runs(runs_dir).items() if is_finished(path)}
    todo = [seed for seed in args.seeds if seed not in finished]
    if finished & set(args.seeds):
        print(f"seeds with a finished run in {runs_dir}, not run again: {sorted(finished & set(args.seeds))}")
    if not todo:
        return True
    record = {"command": shlex.join([sys.executable, *sys.argv]), "cwd": os.getcwd(), "date": now(),
              "seeds_run": todo, "script": args.script, "env_id": args.env_id,
              "total_timesteps": args.total_timesteps, "script_args": args.extra, "jobs": args.jobs,
              "code": git_state(args.script), "machine": machine_info()}
    with open(os.path.join(runs_dir, "launches.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        ok = all(list(pool.map(lambda seed: run_seed(args, runs_dir, seed), todo)))
    # MuJoCo's warning log (its warnings are in the seed logs too): not worth keeping.
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(runs_dir, "MUJOCO_LOG.TXT"))
    return ok


def seed_summary(seed: int, path: str) -> dict:
    rows = read_jsonl(path)
    episodes = [(r["global_step"], r["charts/episodic_return"]) for r in rows if "charts/episodic_return" in r]
    evals = [r["eval/episodic_return"] for r in rows if "eval/episodic_return" in r]
    sps = [r["charts/SPS"] for r in rows if "charts/SPS" in r]
    last_100 = [ret for _, ret in episodes[-100:]]
    return {"seed": seed, "run": os.path.relpath(path, RESULTS), "steps": rows[-1]["global_step"] if rows else 0,
            "episodes": len(episodes), "last100_return": statistics.mean(last_100) if last_100 else None,
            "eval_return": evals[-1] if evals else None, "final_sps": sps[-1] if sps else None,
            "finished": bool(evals), "curve": episodes}


def mean_std(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values), "n": len(values)}


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown(summary: dict) -> str:
    lines = [f"# {summary['tag']}: {summary['script']} on {summary['env_id']}", "",
             f"Summarised {summary['date']}; seeds found: {[s['seed'] for s in summary['per_seed']]}.", "",
             "Launched with:", ""]
    lines += [f"- {r['date']}, seeds run {r['seeds_run']}, code {r['code']}, {r['machine']['cpu']} "
              f"(nproc {r['machine']['nproc']}), torch {r['machine']['torch']}:\n  `{r['command']}`"
              for r in summary["launches"]] or [f"- (no runs-{summary['tag']}/launches.jsonl: command not recorded)"]
    lines += ["", f"| seed | steps | episodes | mean return, last 100 training episodes | final eval return "
                  f"(deterministic) | final SPS ({summary['jobs']} run(s) at once) |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['seed']} | {s['steps']} | {s['episodes']} | {fmt(s['last100_return'])} | "
              f"{fmt(s['eval_return']) if s['finished'] else 'unfinished'} | {s['final_sps']} |"
              for s in summary["per_seed"]]
    last100, evals = summary["last100_return"], summary["eval_return"]
    lines += ["", f"Across {evals['n']} finished seed(s), mean +- std (population): last 100 training episodes "
                  f"{fmt(last100['mean'])} +- {fmt(last100['std'])}; final eval {fmt(evals['mean'])} +- {fmt(evals['std'])}.",
              "", f"![learning curves]({summary['tag']}.png)"]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in summary["per_seed"]:
        if len(s["curve"]) < SMOOTHING:
            continue
        steps, returns = np.array(s["curve"]).T
        smooth = np.convolve(returns, np.ones(SMOOTHING) / SMOOTHING, mode="valid")
        ax.plot(steps[SMOOTHING - 1:], smooth, linewidth=1, label=f"seed {s['seed']}")
    ax.set(xlabel="global step", ylabel=f"episodic return (rolling mean, {SMOOTHING} episodes)",
           title=f"{summary['script']} on {summary['env_id']}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(args, runs_dir: str) -> None:
    launches_path = os.path.join(runs_dir, "launches.jsonl")
    launches = read_jsonl(launches_path) if os.path.isfile(launches_path) else []
    runs = latest_runs(runs_dir)
    if not runs:
        sys.exit(f"no runs/*/metrics.jsonl under {runs_dir}")
    per_seed = [seed_summary(seed, path) for seed, path in runs.items()]
    finished = [s for s in per_seed if s["finished"]]
    first = launches[0] if launches else vars(args)  # what the runs were launched with
    summary = {"tag": args.tag, "script": first["script"], "env_id": first["env_id"],
               "total_timesteps": first["total_timesteps"], "jobs": first["jobs"], "date": now(),
               "launches": launches, "per_seed": per_seed,
               "last100_return": mean_std([s["last100_return"] for s in finished]),
               "eval_return": mean_std([s["eval_return"] for s in finished])}
    base = os.path.join(RESULTS, args.tag)
    with open(base + ".json", "w") as f:
        json.dump({**summary, "per_seed": [{k: v for k, v in s.items() if k != "curve"} for s in per_seed]}, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(markdown(summary))
    plot(summary, base + ".png")
    print(markdown(summary) + f"\nwrote {base}.json, .md, .png")


def main() -> None:
    args = parse_args()
    runs_dir = os.path.join(RESULTS, f"runs-{args.tag}")
    ok = args.summarize_only or launch(args, runs_dir)
    summarize(args, runs_dir)
    if not ok:
        sys.exit("some seeds failed: see runs-<tag>/seed<N>.log")


if __name__ == "__main__":
    main()
