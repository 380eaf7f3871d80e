"""How far one A2C step moves the policy: the exact mean KL(pi_old || pi_new) over each segment's states,
for SB3's A2C (run here with rl-baselines3-zoo's MuJoCo settings, the same as `run.py`'s sb3-A2C peer) and for
actor_critic.py (read from its logged `losses/kl`), summarised per window of env steps.

    # SB3's side, in the peers' venv (benchmarks/README.md); the per-update rows go to benchmarks/runs/a2c_step_kl/
    /tmp/peers-venv/bin/python benchmarks/a2c_step_kl.py run --env-id Walker2d-v5 --seed 3 --total-timesteps 200000
    # the table: SB3's rows beside actor_critic.py's metrics.jsonl files (run.py's grid mujoco_a2c)
    .venv/bin/python benchmarks/a2c_step_kl.py summarize --env-id Walker2d-v5 --seed 3 --total-timesteps 200000 \\
        --ours benchmarks/runs/mujoco_a2c/actor_critic.py/Walker2d-v5/seed*/runs/*/metrics.jsonl

SB3's update is timed nowhere here; `run` also records the gradient's global norm before SB3 clips it.
"""

import argparse
import json
import os
import re
import sys

import numpy as np

from common import RESULTS, ROOT, git_state, machine_info, now, read_jsonl

RAW = os.path.join(ROOT, "benchmarks", "runs", "a2c_step_kl")


def run_sb3(env_id: str, seed: int, total_timesteps: int) -> None:
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    norms, rows, clip = [], [], torch.nn.utils.clip_grad_norm_

    def clip_and_record(parameters, max_norm, *args, **kwargs):  # SB3 calls it once per update
        norm = clip(parameters, max_norm, *args, **kwargs)
        norms.append(float(norm))
        return norm

    torch.nn.utils.clip_grad_norm_ = clip_and_record

    class A2CWithKL(A2C):
        def train(self) -> None:
            obs = next(self.rollout_buffer.get(batch_size=None)).observations
            with torch.no_grad():
                before = self.policy.get_distribution(obs).distribution
                old = torch.distributions.Normal(before.mean.clone(), before.stddev.clone())
            super().train()
            with torch.no_grad():
                after = self.policy.get_distribution(obs).distribution
                kl = torch.distributions.kl_divergence(old, after).sum(-1).mean()
            rows.append([self.num_timesteps, float(kl), norms[-1]])

    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), norm_obs=True, norm_reward=True, gamma=0.99)
    A2CWithKL("MlpPolicy", env, seed=seed, device="cpu", verbose=0).learn(total_timesteps)
    os.makedirs(RAW, exist_ok=True)
    with open(os.path.join(RAW, f"{env_id}_seed{seed}.json"), "w") as f:
        json.dump({"command": " ".join(["python", "benchmarks/a2c_step_kl.py", *sys.argv[1:]]), "date": now(),
                   "rows": rows}, f)


def windows(pairs: np.ndarray, window: int, total: int) -> list[str]:
    cells = []
    for end in range(window, total + 1, window):
        kl = pairs[(pairs[:, 0] > end - window) & (pairs[:, 0] <= end), 1]
        cells.append(f"{kl.mean():.3f} / {np.quantile(kl, 0.99):.2f} / {kl.max():.1f} / {np.mean(kl > 1) * 100:.1f} %"
                     if len(kl) else "n/a")
    return cells


def summarize(env_id: str, seed: int, total: int, window: int, ours: list[str]) -> None:
    with open(os.path.join(RAW, f"{env_id}_seed{seed}.json")) as f:
        sb3 = json.load(f)
    rows = np.array(sb3["rows"])
    header = " | ".join(f"to {end // 1000}k" for end in range(window, total + 1, window))
    lines = [f"# One A2C step's KL on {env_id}: actor_critic.py and SB3 A2C",
             "",
             f"Summarised {now()} ({git_state('benchmarks/a2c_step_kl.py')}); {machine_info()['cpu']}. SB3: "
             f"`{sb3['command']}` ({sb3['date']}). actor_critic.py: its `losses/kl` in run.py's grid `mujoco_a2c` "
             "(the MuJoCo preset: SB3's settings, the value loss's weight aside).",
             "",
             f"Per window of {window // 1000}k env steps, over the updates in it (one update per 5-step segment): "
             "the mean KL(pi_old || pi_new) over the segment's states, as mean / 99th percentile / max / share of "
             "updates above 1 nat.",
             "",
             f"| run | {header} |", "|---|" + "---:|" * (total // window)]
    for path in ours:
        metrics = [(r["global_step"], r["losses/kl"]) for r in read_jsonl(path) if r.get("losses/kl") is not None]
        seed_dir = re.search(r"seed(\d+)", path)
        name = f"actor_critic.py, seed {seed_dir[1]}" if seed_dir else os.path.relpath(path, ROOT)
        lines.append(f"| {name} | " + " | ".join(windows(np.array(metrics), window, total)) + " |")
    lines.append(f"| SB3 A2C, seed {seed} | " + " | ".join(windows(rows[:, :2], window, total)) + " |")
    norms = rows[:, 2]
    lines += ["", f"SB3's gradient norm before clipping (max 0.5): median {np.median(norms):.3f}; clipped in "
              f"{np.mean(norms > 0.5) * 100:.1f} % of its {len(norms)} updates."]
    out = os.path.join(RESULTS, f"a2c_step_kl_{env_id}.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {os.path.relpath(out, ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("run", "summarize"))
    parser.add_argument("--env-id", default="Walker2d-v5")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--total-timesteps", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=50_000)
    parser.add_argument("--ours", nargs="*", default=[], help="actor_critic.py metrics.jsonl files")
    args = parser.parse_args()
    if args.mode == "run":
        run_sb3(args.env_id, args.seed, args.total_timesteps)
    else:
        summarize(args.env_id, args.seed, args.total_timesteps, args.window, sorted(args.ours))


if __name__ == "__main__":
    main()
