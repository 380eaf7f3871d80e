"""The peers' side of speed.py: one Stable-Baselines3 / sb3-contrib training run, timed.

Runs with the peers' Python (a separate benchmark venv, see benchmarks/README.md), never the project's: it
imports nothing from this project, and the project does not depend on what it imports.

    PEERS_PYTHON benchmarks/peers.py --algo ppo --env-id CartPole-v1 --total-timesteps 100000 --threads 1 \
        --settings '{"n_envs": 4, "n_steps": 128, "batch_size": 128, "n_epochs": 4, "learning_rate": 2.5e-4,
                     "linear_lr": true, "policy_kwargs": {"net_arch": {"pi": [64, 64], "vf": [64, 64]},
                     "activation_fn": "Tanh", "ortho_init": true}}'
    PEERS_PYTHON benchmarks/peers.py --versions          # the peers' package versions, as JSON

Prints "steps: N" and "SPS: N": env steps / seconds of model.learn(), the model (envs, policy, optimizer)
being built before the clock starts. SB3 itself prints no such figure unless verbose (its "fps" is the
same quotient, taken inside learn()).

With --exp-name (how benchmarks/run.py runs a peer's cell), the run also writes our scripts' metrics contract
to runs/{env}__{exp_name}__{seed}__{time}/metrics.jsonl: a row per finished training episode (the Monitor's
raw return and length, charts/episodic_return and charts/episodic_length), charts/SPS after every rollout,
and at the end eval/episodic_return, the mean of --eval-episodes deterministic episodes (model.predict with
deterministic=True, VecNormalize's observation statistics frozen; episode i reset with seed + 10000 + i, as
our evaluate() does).

--settings is a JSON object. Its keys, apart from these, are the algorithm's constructor arguments:
  n_envs       vector envs (make_vec_env: a DummyVecEnv of Monitor-wrapped envs)
  normalize    null, or VecNormalize's arguments (e.g. {"norm_obs": true, "norm_reward": true, "gamma": 0.99})
  linear_lr    true: learning_rate decays linearly to 0 over the run (like our --anneal-lr)
  policy_kwargs  as SB3's, with activation_fn given by name in torch.nn ("Tanh")
"""

import argparse
import json
import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("torch", "gymnasium", "numpy", "mujoco", "stable-baselines3", "sb3-contrib")


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def algorithm(name: str):
    if name == "trpo":
        from sb3_contrib import TRPO
        return TRPO
    import stable_baselines3
    return {"ppo": stable_baselines3.PPO, "a2c": stable_baselines3.A2C}[name]


def build(algo: str, env_id: str, seed: int, settings: dict):
    import torch.nn as nn
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    settings = dict(settings)
    env = make_vec_env(env_id, n_envs=settings.pop("n_envs", 1), seed=seed)
    if normalize := settings.pop("normalize", None):
        env = VecNormalize(env, **normalize)
    if settings.pop("linear_lr", False):
        lr = settings["learning_rate"]
        settings["learning_rate"] = lambda progress_remaining: progress_remaining * lr
    policy_kwargs = dict(settings.pop("policy_kwargs", {}))
    if "activation_fn" in policy_kwargs:
        policy_kwargs["activation_fn"] = getattr(nn, policy_kwargs["activation_fn"])
    return algorithm(algo)("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0,
                           **settings)


def open_metrics(env_id: str, exp_name: str, seed: int):
    run_dir = os.path.join("runs", f"{env_id}__{exp_name}__{seed}__{int(time.time())}")
    os.makedirs(run_dir)
    print(f"run directory: {run_dir}", flush=True)
    return open(os.path.join(run_dir, "metrics.jsonl"), "w")


def write_row(metrics, row: dict) -> None:
    metrics.write(json.dumps(row, allow_nan=False) + "\n")


def episode_logger(metrics, start: float):
    """An SB3 callback writing each finished episode (from the Monitor's info) and the SPS after each rollout."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeLogger(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    write_row(metrics, {"global_step": self.num_timesteps,
                                        "charts/episodic_return": float(info["episode"]["r"]),
                                        "charts/episodic_length": int(info["episode"]["l"])})
            return True

        def _on_rollout_end(self) -> None:
            sps = int(self.num_timesteps / (time.perf_counter() - start))
            write_row(metrics, {"global_step": self.num_timesteps, "charts/SPS": sps})
            metrics.flush()

    return EpisodeLogger()


def evaluate(model, env_id: str, episodes: int, seed: int) -> list[float]:
    """Deterministic episodes on one env, observations normalised with the frozen VecNormalize statistics."""
    import gymnasium as gym
    import numpy as np

    normalizer, env, returns = model.get_vec_normalize_env(), gym.make(env_id), []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, episode_return = False, 0.0
        while not done:
            action, _ = model.predict(normalizer.normalize_obs(obs) if normalizer else obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(np.asarray(action))
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    print(f"eval/episodic_return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {episodes} deterministic "
          f"episodes of {env_id}")
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", action="store_true", help="print the package versions as JSON; run nothing")
    parser.add_argument("--algo", choices=("ppo", "a2c", "trpo"))
    parser.add_argument("--env-id")
    parser.add_argument("--total-timesteps", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--settings", default="{}", help="JSON object, see above")
    parser.add_argument("--exp-name", help="also write our metrics contract under runs/ (see above)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="with --exp-name: deterministic episodes at the end")
    args = parser.parse_args()
    if args.versions:
        print(json.dumps(versions()))
        return
    if not (args.algo and args.env_id and args.total_timesteps):
        parser.error("--algo, --env-id and --total-timesteps are required")

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build(args.algo, args.env_id, args.seed, json.loads(args.settings))
    metrics = open_metrics(args.env_id, args.exp_name, args.seed) if args.exp_name else None
    start = time.perf_counter()
    model.learn(total_timesteps=args.total_timesteps, callback=episode_logger(metrics, start) if metrics else None)
    elapsed = time.perf_counter() - start
    if metrics:
        returns = evaluate(model, args.env_id, args.eval_episodes, args.seed + 10_000)
        write_row(metrics, {"global_step": model.num_timesteps, "eval/episodic_return": float(sum(returns) / len(returns))})
        metrics.close()
    print(f"steps: {model.num_timesteps}")
    print(f"SPS: {int(model.num_timesteps / elapsed)}")


if __name__ == "__main__":
    main()
