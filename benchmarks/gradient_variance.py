"""Bias and variance of the policy-gradient estimators of the lectures, measured on fixed policies.

For each env and each fixed policy (the random initialisation of ppo_clip.Agent, and one partially
trained by ppo_clip.py), whole episodes are collected and cut into batches of B episodes. Each
batch gives one estimate

    g_hat = (1/B) sum_episodes sum_t grad_theta log pi(a_t|s_t) Psi_t    (w.r.t. the actor only)

per choice of the weight Psi_t (gamma = 0.99; the gamma^t factor of the exact discounted gradient
is dropped, as in every script of the project; 1/B, not the mean over the batch's steps, whose
random count would make a ratio estimator, biased by O(1/B)):

    R(tau)      sum_{k<t} r_k + G_t: all the episode's rewards (exactly R(tau) = sum_k r_k when
                gamma = 1)
    RTG         G_t = sum_{k>=t} gamma^(k-t) r_k, the reward-to-go (gae.reward_to_go)
    RTG - V     G_t - V(s_t), V a critic fitted beforehand on other episodes of the same policy
    GAE(lam)    gae.compute_gae with that V: terminated steps not bootstrapped, truncated ones
                from V(final obs)

R(tau), RTG and RTG - V all have the expectation g = E[sum_t grad log pi(a_t|s_t) G_t]: the
rewards before t are independent of a_t given s_t (causality), and so is the fixed V(s_t)
(baseline). GAE with lambda < 1 replaces the sampled future by V and is biased wherever V is
wrong. (R(tau) discounted from t = 0 would have another expectation, sum_t gamma^t E[grad log pi
G_t], so its past rewards are left undiscounted here.)

Per estimator, over K independent batches: total variance (trace of the covariance of g_hat), MSE
and cosine similarity to the reference g (the mean of RTG - V over separate reference episodes;
its standard error is reported), and the bias E[g_hat - g_hat(RTG - V)], measured on the same
batches as RTG - V (paired: the noise the two share cancels) with the noise floor such a mean
shows when the bias is zero. Writes results/gradient_variance.{json,md,png}.

    python benchmarks/gradient_variance.py              # CartPole-v1, InvertedPendulum-v5
    python benchmarks/gradient_variance.py --envs CartPole-v1 --batches 50 \
        --reference-episodes 400                        # quick look
"""

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import sys
import tempfile
import time
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from common import RESULTS, ROOT, code_version, machine_info, now

sys.path.insert(0, ROOT)
import ppo_clip  # noqa: E402
from gae import compute_gae, reward_to_go  # noqa: E402

# ppo_clip.py flags for the partially trained policies: its defaults for discrete actions, the
# MuJoCo preset for continuous ones, and the steps to train (returns still far from the maximum,
# and varying).
PPO_FLAGS = {False: {}, True: dict(num_envs=1, num_steps=2048, num_minibatches=32,
                                   update_epochs=10, learning_rate=3e-4, ent_coef=0.0)}
TRAIN_STEPS = {False: 20480, True: 10240}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "InvertedPendulum-v5"],
                   help="Gymnasium env ids")
    p.add_argument("--policies", nargs="+", default=["random", "trained"],
                   choices=["random", "trained"],
                   help="the random initialisation, and/or a policy trained briefly with "
                   "ppo_clip.py")
    p.add_argument("--train-timesteps", type=int, help="ppo_clip.py steps of the trained policy "
                   f"(default: {TRAIN_STEPS[False]} for discrete actions, {TRAIN_STEPS[True]} for "
                   "continuous)")
    p.add_argument("--episodes-per-batch", type=int, default=8,
                   help="B: whole episodes per gradient estimate")
    p.add_argument("--batches", type=int, default=200, help="K: independent batches per estimator")
    p.add_argument("--reference-episodes", type=int, default=4000,
                   help="episodes of the reference gradient")
    p.add_argument("--critic-episodes", type=int, default=400,
                   help="episodes the critic V is fitted on")
    p.add_argument("--critic-steps", type=int, default=2000,
                   help="Adam steps (minibatches of 256) fitting V")
    p.add_argument("--gamma", type=float, default=0.99, help="discount factor")
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.5, 0.9, 0.95, 0.99, 1.0],
                   help="GAE lambdas")
    p.add_argument("--num-envs", type=int, default=32, help="vector envs collecting the episodes")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the policies, the critic and the episodes")
    p.add_argument("--out", default=os.path.join(RESULTS, "gradient_variance"),
                   help="writes OUT.json, OUT.md and OUT.png (default: "
                   "benchmarks/results/gradient_variance)")
    args = p.parse_args()
    problems = [f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}"
                for name in ("episodes_per_batch", "critic_episodes", "critic_steps", "num_envs",
                             "train_timesteps")
                if getattr(args, name) is not None and getattr(args, name) <= 0]
    problems += [f"--batches must be at least 2, got {args.batches}"] * (args.batches < 2)
    problems += [f"--reference-episodes must be at least 2 batches "
                 f"({2 * args.episodes_per_batch}), got {args.reference_episodes}"
                 ] * (args.reference_episodes < 2 * args.episodes_per_batch)
    problems += [f"--gamma must be in (0, 1], got {args.gamma}"] * (not 0 < args.gamma <= 1)
    problems += [f"--lambdas must be in [0, 1], got {lam}" for lam in args.lambdas
                 if not 0 <= lam <= 1]
    problems += [f"--seed must be in [0, 2**32), got {args.seed}"] * (not 0 <= args.seed < 2**32)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        problems.append(f"--out {args.out}: {out_dir} is not a writable directory")
    if problems:
        sys.exit(f"error: {problems[0]}")
    for env_id in args.envs:  # an unknown id or unsupported space: one line now, not after an env
        ppo_clip.make_env(env_id).close()
    args.lambdas = list(dict.fromkeys(args.lambdas))
    return args


def trained_agent(env_id: str, continuous: bool, steps: int,
                  seed: int) -> tuple[ppo_clip.Agent, str]:
    """ppo_clip.py run in-process for `steps` steps in a temporary directory; its saved model,
    reloaded (weights_only, as ppo_clip.py's --eval-checkpoint loads it)."""
    flags = PPO_FLAGS[continuous]
    args = ppo_clip.Args(env_id=env_id, total_timesteps=steps, seed=seed, eval_episodes=0,
                         save_model=True, **flags)
    with (tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp),
          contextlib.redirect_stdout(io.StringIO()) as log):
        ppo_clip.train(args)
        [run] = os.listdir("runs")
        checkpoint = torch.load(os.path.join("runs", run, "ppo_clip.pt"), map_location="cpu",
                                weights_only=True)
    saved = ppo_clip.Args(**checkpoint["args"])
    env = ppo_clip.make_env(saved.env_id)
    agent = ppo_clip.Agent(env.observation_space.shape[0], env.action_space, saved)
    env.close()
    agent.load_state_dict(checkpoint["model"])
    recent = log.getvalue().splitlines()[-2].split("|")[2].strip()  # "step N/N | SPS s | return R"
    command = " ".join(["python ppo_clip.py --env-id", env_id, "--total-timesteps", str(steps),
                        "--seed", str(seed),
                        *(f"--{key.replace('_', '-')} {value}" for key, value in flags.items())])
    return agent.eval(), f"`{command}` (last 100 training episodes: {recent})"


def make_envs(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """num_envs of ppo_clip.make_env's env, as ppo_clip.py's train() vectorises them: in SAME_STEP
    autoreset mode (the last observation of an episode comes in infos["final_obs"]), copy=False
    (the arrays returned are reused by the next step)."""
    return gym.vector.SyncVectorEnv([lambda: ppo_clip.make_env(env_id)] * num_envs, copy=False,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def sample(agent: ppo_clip.Agent, params: torch.Tensor) -> torch.Tensor:
    """a ~ agent.dist(params), drawn from torch's generator: Gumbel-max, argmax(logits + Gumbel
    noise), for a categorical; mean + std * N(0, 1) for a Gaussian. (ppo_clip.Agent.sample, which
    drew the committed results' episodes; the scripts now sample in numpy, make_sampler.)"""
    if not agent.continuous:
        return (params - torch.empty_like(params).exponential_().log()).argmax(-1)
    mean, logstd = params.chunk(2, dim=-1)
    return mean + logstd.exp() * torch.randn_like(mean)


def collect(agent: ppo_clip.Agent, env_id: str, episodes: int, num_envs: int, seed: int) -> dict:
    """`episodes` whole episodes of the fixed policy, time-major (T, num_envs). Env slot i keeps
    its episodes number k with id k * num_envs + i < episodes: a quota per slot, fixed before any
    episode is seen. (Taking the first episodes to finish would favour short ones.) Steps of the
    other episodes have id >= episodes."""
    envs = make_envs(env_id, num_envs)
    space = envs.single_action_space
    low, high = (space.low, space.high) if agent.continuous else (None, None)
    needed = np.array([len(range(i, episodes, num_envs)) for i in range(num_envs)])
    finished = np.zeros(num_envs, dtype=np.int64)
    steps = {key: [] for key in ("obs", "next_obs", "actions", "rewards", "terminated", "dones",
                                 "episode")}
    observation, _ = envs.reset(seed=seed)
    while (finished < needed).any():
        obs = observation.astype(np.float32)  # a copy: with copy=False the env reuses its arrays
        with torch.inference_mode():
            action = sample(agent, agent.policy_params(torch.from_numpy(obs))).numpy()
        observation, reward, terminated, truncated, infos = envs.step(
            np.clip(action, low, high) if agent.continuous else action)
        next_obs = observation.astype(np.float32)
        if "final_obs" in infos:  # the true s_{t+1} of an episode that ended at t
            ended = np.flatnonzero(infos["_final_obs"])
            next_obs[ended] = np.stack(infos["final_obs"][ended])
        for key, value in zip(steps, (obs, next_obs, action, reward.astype(np.float32), terminated,
                                      terminated | truncated,
                                      finished * num_envs + np.arange(num_envs))):
            steps[key].append(value)
        finished += terminated | truncated
    envs.close()
    return {key: torch.from_numpy(np.stack(value)) for key, value in steps.items()}


def rewards_before(rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
    """sum_{k<t} r_k within each episode, time-major (T, N): the part of R(tau) that causality
    drops."""
    before, carry = torch.empty_like(rewards), torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0]):
        before[t] = carry
        carry = (carry + rewards[t]) * dones[t].logical_not()
    return before


def fit_critic(obs: torch.Tensor, returns: torch.Tensor, steps: int, seed: int) -> Callable:
    """A 2 x 64 tanh value network (ppo_clip.mlp, ppo_clip.Agent's critic) regressed on
    Monte-Carlo returns (MSE, Adam, minibatches of 256), with inputs and targets standardised by
    the fitting data."""
    torch.manual_seed(seed)
    mlp = ppo_clip.mlp(obs.shape[1], 1, std=1.0)
    x_mean, x_std = obs.mean(0), obs.std(0) + 1e-6
    y_mean, y_std = returns.mean(), returns.std() + 1e-6
    optimizer = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(len(obs), (256,))
        loss = (mlp((obs[idx] - x_mean) / x_std).squeeze(-1)
                - (returns[idx] - y_mean) / y_std).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return lambda x: (mlp((x - x_mean) / x_std).squeeze(-1) * y_std + y_mean).detach()


def batch_gradients(agent: ppo_clip.Agent, obs, actions, weights, episodes: int) -> torch.Tensor:
    """(E, P): per weight column Psi, the gradient of sum_t Psi_t log pi(a_t|s_t) / episodes
    w.r.t. the actor's parameters, flattened. One forward pass, one backward pass per column."""
    params = [*agent.actor.parameters()] + ([agent.actor_logstd] if agent.continuous else [])
    logp, _ = agent.log_prob_entropy(agent.policy_params(obs), actions)
    return torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(
        logp, params, w / episodes, retain_graph=True)]) for w in weights.T])


def trace_cov(x: torch.Tensor) -> float:
    """Trace of the sample covariance of the rows of x: the mean squared distance from their mean
    (unbiased)."""
    return ((x - x.mean(0)).pow(2).sum() / (len(x) - 1)).item()


def statistics(grads: torch.Tensor, K: int, names: list[str]) -> tuple[list[dict], dict]:
    """grads (K + R, E, P): batch estimates, the first K the trial batches, the other R the
    reference's. The reference gradient g is the mean of RTG - V over the R reference batches;
    variance, MSE and cosine come from the K trial batches (independent of g); the bias
    E[g_hat - g_hat(RTG - V)] from all K + R (paired)."""
    R, base = len(grads) - K, names.index("rtg_minus_v")
    ref = grads[K:, base].double()
    g = ref.mean(0)
    g_norm, ref_se2 = g.norm().item(), trace_cov(ref) / R
    estimators = []
    for e, name in enumerate(names):
        x = grads[:K, e].double()
        variance = trace_cov(x)
        paired = (grads[:, e] - grads[:, base]).double()  # same episodes: shared noise cancels
        bias, bias_noise = paired.mean(0).norm().item(), math.sqrt(trace_cov(paired) / (K + R))
        # E|g_hat - g_true|^2: the reference's noise removed
        mse = (x - g).pow(2).sum(1).mean().item() - ref_se2
        estimators.append({
            "name": name, "variance": variance, "rel_variance": variance / g_norm**2,
            "bias": bias, "bias_noise_floor": bias_noise, "rel_bias": bias / g_norm,
            "rel_bias_noise_floor": bias_noise / g_norm,
            "distance_to_reference": (x.mean(0) - g).norm().item(),
            "distance_noise_floor": math.sqrt(variance / K + ref_se2),
            "mse": mse, "rel_mse": mse / g_norm**2,
            "cos_batch": torch.nn.functional.cosine_similarity(x, g[None], dim=1).mean().item(),
            "cos_mean": torch.nn.functional.cosine_similarity(x.mean(0), g, dim=0).item()})
    # mean 0: the baseline adds no bias
    gap = (grads[K:, names.index("reward_to_go")] - grads[K:, base]).double()
    reference = {"norm": g_norm, "standard_error": ref_se2**0.5,
                 "rel_standard_error": ref_se2**0.5 / g_norm,
                 "rtg_minus_baseline_rel_gap": gap.mean(0).norm().item() / g_norm,
                 "rtg_minus_baseline_rel_noise": math.sqrt(trace_cov(gap) / R) / g_norm}
    return estimators, reference


def measure(env_id: str, policy: str, args) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(args.seed)
    probe = ppo_clip.make_env(env_id)
    continuous = isinstance(probe.action_space, gym.spaces.Box)
    if policy == "random":
        # the initial weights (policy head gain 0.01: near-uniform logits, Gaussian mean ~ 0 and
        # std 1), with ppo_clip.py's default normalisation (on for continuous actions; statistics
        # at mean 0, variance 1)
        agent = ppo_clip.Agent(probe.observation_space.shape[0], probe.action_space,
                               ppo_clip.Args(norm_obs=continuous))
        about = f"ppo_clip.Agent as initialised with torch.manual_seed({args.seed})"
    else:
        agent, about = trained_agent(env_id, continuous,
                                     args.train_timesteps or TRAIN_STEPS[continuous], args.seed)
    probe.close()

    # Episodes: ids [0, C) fit the critic, the next K x B make the trial batches, the rest the
    # reference.
    B, K, C = args.episodes_per_batch, args.batches, args.critic_episodes
    R = args.reference_episodes // B
    total = C + K * B + R * B
    torch.manual_seed(args.seed)
    cpu = {"policy": time.process_time() - cpu_start}
    d = collect(agent, env_id, total, args.num_envs, args.seed)
    cpu["episodes"] = time.process_time() - cpu_start - sum(cpu.values())
    rtg = reward_to_go(d["rewards"], d["dones"], args.gamma)
    keep = d["episode"] < total
    t_idx, n_idx = keep.nonzero(as_tuple=True)  # time order within each env slot ...
    order = torch.argsort(d["episode"][t_idx, n_idx], stable=True)  # ... kept within each episode
    flat = lambda x: x[t_idx, n_idx][order]  # noqa: E731  (T, N) -> episode 0's steps, 1's, ...
    lengths = torch.bincount(flat(d["episode"]), minlength=total)
    # the first step of each episode; the steps of episodes [a, b)
    first = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    steps_of = lambda a, b: slice(first[a].item(), first[b].item())  # noqa: E731

    critic_steps = steps_of(0, C)
    value = fit_critic(flat(d["obs"])[critic_steps], flat(rtg)[critic_steps], args.critic_steps,
                       args.seed)
    with torch.no_grad():
        values, next_values = value(d["obs"]), value(d["next_obs"])
        columns = {"whole_return": rewards_before(d["rewards"], d["dones"]) + rtg,
                   "reward_to_go": rtg, "rtg_minus_v": rtg - values}
        for lam in args.lambdas:
            columns[f"gae_{lam:g}"] = compute_gae(d["rewards"], values, next_values,
                                                  d["terminated"], d["dones"], args.gamma, lam)
    cpu["critic_and_weights"] = time.process_time() - cpu_start - sum(cpu.values())
    weights = torch.stack([flat(w) for w in columns.values()], 1)  # (steps, E)
    obs, actions = flat(d["obs"]), flat(d["actions"])
    grads = torch.stack([batch_gradients(agent, obs[s], actions[s], weights[s], B)
                         for s in (steps_of(C + j * B, C + (j + 1) * B) for j in range(K + R))])
    cpu["gradients"] = time.process_time() - cpu_start - sum(cpu.values())
    estimators, reference = statistics(grads, K, list(columns))
    returns = torch.zeros(total, dtype=torch.float64).index_add_(0, flat(d["episode"]),
                                                                 flat(d["rewards"]).double())
    trial_steps = steps_of(C, C + K * B)
    trial_values, trial_rtg = flat(values)[trial_steps], flat(rtg)[trial_steps]
    return {
        "env": env_id, "policy": policy, "policy_source": about, "continuous": continuous,
        "actor_parameters": grads.shape[2],
        "episodes": {"critic": C, "trial": K * B, "reference": R * B, "steps": len(obs),
                     "return_mean": returns.mean().item(), "return_std": returns.std().item(),
                     "return_min": returns.min().item(), "return_max": returns.max().item(),
                     "length_mean": lengths.double().mean().item(),
                     "length_max": lengths.max().item(),
                     "truncated_fraction": (flat(d["dones"] & ~d["terminated"]).sum()
                                            / total).item()},
        "critic_explained_variance": 1 - ((trial_rtg - trial_values).var()
                                          / trial_rtg.var()).item(),
        "reference": reference, "estimators": estimators, "seconds": time.perf_counter() - start,
        "cpu_seconds": {**cpu, "total": time.process_time() - cpu_start}}


LABELS = {"whole_return": "R(tau)", "reward_to_go": "RTG", "rtg_minus_v": "RTG - V"}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("gae_", "GAE lambda="))


def markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    modified = report["code"]["modified"]
    code = report["code"]["commit"] + (f" ({', '.join(modified)} modified)" if modified else "")
    lines = ["# Policy-gradient estimators: variance and bias on fixed policies", "",
             f"`{report['command']}`", "",
             f"{report['date']}; code {code}; {m['cpu']}, nproc {m['nproc']}, "
             f"Python {m['python']}, torch {m['torch']}, Gymnasium {m['gymnasium']}; "
             f"{report['wall_time_s']:.0f} s ({report['cpu_time_s']:.0f} s of CPU, one thread).",
             "",
             f"Batches of B = {s['episodes_per_batch']} whole episodes, K = {s['batches']} batches "
             f"per estimator, gamma = {s['gamma']}, gradient of (1/B) sum_episodes sum_t "
             "log pi(a_t|s_t) Psi_t w.r.t. the actor (gamma^t dropped). g: reference gradient "
             "(RTG - V over the reference episodes). Variance: trace of the covariance of one "
             "batch's estimate. Bias: |E[g_hat - g_hat(RTG - V)]| on the same batches; an "
             "unbiased estimator shows about the noise floor. MSE: E|g_hat - g|^2. cos: mean "
             "cosine similarity of one batch's estimate to g.", ""]
    for r in report["results"]:
        ep, ref = r["episodes"], r["reference"]
        lines += [f"## {r['env']}, {r['policy']} policy", "",
                  f"Policy: {r['policy_source']}. {r['actor_parameters']} actor parameters. "
                  f"Episodes: return {ep['return_mean']:.1f} +- {ep['return_std']:.1f} "
                  f"(min {ep['return_min']:.0f}, max {ep['return_max']:.0f}), length "
                  f"{ep['length_mean']:.1f} (max {ep['length_max']}), "
                  f"{100 * ep['truncated_fraction']:.1f}% truncated; {ep['critic']} for V "
                  f"(explained variance {r['critic_explained_variance']:.2f} on the trial "
                  f"episodes), {ep['trial']} trial, {ep['reference']} reference. "
                  f"|g| = {ref['norm']:.4g}, standard error {ref['rel_standard_error']:.3f} |g|; "
                  f"reference by RTG instead of RTG - V differs by "
                  f"{ref['rtg_minus_baseline_rel_gap']:.3f} |g| "
                  f"(noise {ref['rtg_minus_baseline_rel_noise']:.3f} |g|). "
                  f"{r['cpu_seconds']['total']:.0f} s of CPU.", "",
                  "| estimator | variance | variance / \\|g\\|^2 | bias / \\|g\\| (noise floor) | "
                  "\\|mean - g\\| / \\|g\\| (noise floor) | MSE / \\|g\\|^2 | cos |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for e in r["estimators"]:
            bias = ("(baseline)" if e["name"] == "rtg_minus_v"
                    else f"{e['rel_bias']:.3f} ({e['rel_bias_noise_floor']:.3f})")
            lines.append(f"| {label(e['name'])} | {e['variance']:.3g} | {e['rel_variance']:.3g} "
                         f"| {bias} | {e['distance_to_reference'] / ref['norm']:.3f} "
                         f"({e['distance_noise_floor'] / ref['norm']:.3f}) | "
                         f"{e['rel_mse']:.3g} | {e['cos_batch']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    names = [e["name"] for e in results[0]["estimators"]]
    x, width = np.arange(len(names)), 0.8 / len(results)
    envs = list(dict.fromkeys(r["env"] for r in results))
    fig, axes = plt.subplots(3, 1, figsize=(11, 10.5), sharex=True)
    for i, r in enumerate(results):  # a colour per env, light for the random policy, dark: trained
        est, pos = r["estimators"], x - 0.4 + width * (i + 0.5)
        color = plt.cm.tab20(2 * envs.index(r["env"]) + (r["policy"] == "random"))
        axes[0].bar(pos, [e["rel_variance"] for e in est], width, color=color,
                    label=f"{r['env']}, {r['policy']}")
        bias, floor = (np.array([e[key] for e in est]) for key in ("rel_bias",
                                                                   "rel_bias_noise_floor"))
        # not RTG - V itself, nor GAE(1) where it equals RTG - V (no truncated episode)
        shown = floor > 1e-4
        detected = shown & (bias > 2 * floor)
        axes[1].bar(pos[detected], bias[detected], width, color=color)
        axes[1].bar(pos[shown & ~detected], bias[shown & ~detected], width, facecolor="white",
                    edgecolor=color)
        axes[1].scatter(pos[shown], floor[shown], marker="_", color="black", s=60, zorder=3,
                        label="noise floor (what bias 0 shows)" if i == 0 else None)
        axes[2].bar(pos, [e["cos_batch"] for e in est], width, color=color)
    for j, name in enumerate(names):  # estimators without a bias bar in any setting
        if all(r["estimators"][j]["rel_bias_noise_floor"] <= 1e-4 for r in results):
            text = ("RTG - V itself" if name == "rtg_minus_v"
                    else "= RTG - V\n(no truncation)")
            axes[1].text(j, 0.5, text,
                         transform=axes[1].get_xaxis_transform(), ha="center", va="center",
                         fontsize=8, color="gray")
    variances = [e["rel_variance"] for r in results for e in r["estimators"]]
    axes[0].set(yscale="log", ylim=(min(variances) / 2, max(variances) * 2),
                ylabel="variance / |g|^2",
                title="Variance of one batch's estimate "
                f"({report['settings']['episodes_per_batch']} episodes)")
    axes[1].set(yscale="log", ylabel="bias / |g|",
                title="Bias |E[g_hat - g_hat(RTG - V)]| (hollow: below 2x the noise floor, no bias "
                "detected)")
    axes[2].set(ylabel="cosine",
                ylim=(min(0, min(e["cos_batch"] for r in results for e in r["estimators"])), 1),
                title="Mean cosine similarity of one batch's estimate to the reference gradient g")
    axes[2].set_xticks(x, [label(n).replace("GAE lambda=", "GAE\nlambda=") for n in names])
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8, loc="upper right")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    s = report["settings"]
    fig.suptitle(f"Policy-gradient estimators on fixed policies: {s['batches']} batches of "
                 f"{s['episodes_per_batch']} whole episodes per estimator, gamma {s['gamma']}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    torch.distributions.Distribution.set_default_validate_args(False)
    start, cpu_start, results = time.perf_counter(), time.process_time(), []
    for env_id in args.envs:
        for policy in args.policies:
            results.append(measure(env_id, policy, args))
            r = results[-1]
            print(f"{env_id} {policy}: return {r['episodes']['return_mean']:.1f}, "
                  f"{r['episodes']['steps']} steps, {r['seconds']:.0f} s "
                  f"({r['cpu_seconds']['total']:.0f} s of CPU)", flush=True)
            for e in r["estimators"]:
                print(f"  {label(e['name']):18s} variance/|g|^2 {e['rel_variance']:10.4g}  "
                      f"bias/|g| {e['rel_bias']:.3f} (noise {e['rel_bias_noise_floor']:.3f})  "
                      f"MSE/|g|^2 {e['rel_mse']:10.4g}  cos {e['cos_batch']:.3f}", flush=True)
    settings = {key: getattr(args, key) for key in (
        "envs", "policies", "episodes_per_batch", "batches", "reference_episodes",
        "critic_episodes", "critic_steps", "gamma", "lambdas", "num_envs", "seed")}
    settings["train_timesteps"] = {r["env"]: args.train_timesteps or TRAIN_STEPS[r["continuous"]]
                                   for r in results if r["policy"] == "trained"}
    report = {"name": "gradient_variance", "date": now(),
              "command": shlex.join(["python", "benchmarks/gradient_variance.py", *sys.argv[1:]]),
              "code": code_version("benchmarks/gradient_variance.py", "ppo_clip.py", "gae.py"),
              "machine": machine_info(), "wall_time_s": time.perf_counter() - start,
              "cpu_time_s": time.process_time() - cpu_start,
              "out": os.path.relpath(os.path.abspath(args.out), ROOT), "settings": settings,
              "results": results}
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(report))
    plot(report, args.out + ".png")
    print(f"wrote {report['out']}.json, .md and .png; {report['wall_time_s']:.0f} s, "
          f"{report['cpu_time_s']:.0f} s of CPU")


if __name__ == "__main__":
    main()
