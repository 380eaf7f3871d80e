"""One TRPO update of trpo.py against sb3-contrib's TRPO, on the same batch and weights.

sb3-contrib learns much faster than trpo.py on HalfCheetah with "the same" zoo preset. This finds
out why: it trains sb3-contrib's TRPO for a few iterations, then lets it make one more update
while keeping the batch (normalised observations, actions, advantages, old log-probs) and the
policy's weights before and after. The same weights are loaded into trpo.py's Agent, which makes
its own step on that batch with trpo.py's functions (surrogate gradient, Fisher-vector products,
conjugate gradient, natural step, line search). The two parameter steps are compared (cosine,
norms per tensor), under trpo.py's settings and under settings rescaled by the number of action
dimensions d.

Why d: sb3-contrib builds its diagonal Gaussian as independent per-dimension Normals and averages
their KL over the batch *and* the action dimensions, so its KL bound is on KL(joint) / d. trpo.py
(like the TRPO paper) bounds the KL of the joint action distribution. Dividing the KL by d divides
its Hessian (the Fisher matrix) by d, so sb3-contrib's step with (max KL delta, damping lambda)
is trpo.py's step with (d delta, d lambda). A categorical policy (CartPole) has no such factor:
there the two must agree as they are.

Needs both projects in one interpreter: run it with the peers' venv (see benchmarks/README.md),
from the repo root:

    $PEERS_PYTHON benchmarks/trpo_vs_sb3_contrib.py \
        --env-ids CartPole-v1 HalfCheetah-v5 Hopper-v5 Walker2d-v5
"""

import argparse
import copy
import os
import sys
import time

import gymnasium as gym
import torch
from torch.nn.utils import parameters_to_vector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import trpo  # noqa: E402

# rl-baselines3-zoo's TRPO presets (the ones benchmarks/run.py uses): MuJoCo, and CartPole's shape
ZOO = {"mujoco": dict(n_envs=2, n_steps=1024, batch_size=128, cg_max_steps=25, n_critic_updates=20,
                      normalize=True),
       "classic": dict(n_envs=2, n_steps=512, batch_size=128, cg_max_steps=10, n_critic_updates=10,
                       normalize=False)}
MAX_KL, DAMPING = 0.01, 0.1  # both sides' defaults


def sb3_update(env_id: str, seed: int, warmup: int):
    """sb3-contrib's TRPO after `warmup` iterations, then one more: (batch, weights before, weights
    after, KL it logged, action space)."""
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecNormalize

    preset = dict(ZOO["classic" if env_id in ("CartPole-v1", "Acrobot-v1") else "mujoco"])
    n_envs, normalize = preset.pop("n_envs"), preset.pop("normalize")
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if normalize:
        env = VecNormalize(env, norm_obs=True, norm_reward=True, gamma=0.99)
    model = TRPO("MlpPolicy", env, gamma=0.99, gae_lambda=0.95, learning_rate=1e-3,
                 target_kl=MAX_KL, cg_damping=DAMPING, seed=seed, device="cpu", **preset)
    logdir = f"/tmp/trpo_vs_sb3_contrib_{os.getpid()}"
    model.set_logger(configure(logdir, ["csv"]))
    batch = n_envs * preset["n_steps"]
    model.learn(batch * warmup)
    before = copy.deepcopy(model.policy.state_dict())
    model.learn(batch, reset_num_timesteps=False)
    after = copy.deepcopy(model.policy.state_dict())
    import csv
    with open(os.path.join(logdir, "progress.csv")) as f:
        logged_kl = float(list(csv.DictReader(f))[-1]["train/kl_divergence_loss"])
    b = model.rollout_buffer
    actions = torch.as_tensor(b.actions.reshape(batch, -1))
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    actions = actions.squeeze(-1).long() if discrete else actions.float()
    data = (torch.as_tensor(b.observations.reshape(batch, -1)).float(), actions,
            torch.as_tensor(b.advantages.reshape(-1)).float(),
            torch.as_tensor(b.log_probs.reshape(-1)).float())
    return data, before, after, logged_kl, env.action_space


# trpo.py's module names -> sb3's ActorCriticPolicy's (both: separate 2 x 64 tanh actor, critic)
NAMES = {"actor.0": "mlp_extractor.policy_net.0", "actor.2": "mlp_extractor.policy_net.2",
         "actor.4": "action_net", "critic.0": "mlp_extractor.value_net.0",
         "critic.2": "mlp_extractor.value_net.2", "critic.4": "value_net",
         "actor_logstd": "log_std"}


def sb3_name(ours: str) -> str:
    module, _, kind = ours.rpartition(".")
    return NAMES[ours] if ours in NAMES else f"{NAMES[module]}.{kind}"


def load_sb3(agent, state: dict):
    """trpo.py's Agent with the weights of an sb3 policy's state dict."""
    agent.load_state_dict({name: state[sb3_name(name)] for name in agent.state_dict()})
    return agent


def our_step(agent, state: dict, data, max_kl: float, damping: float, cg_iters: int):
    """trpo.py's update on sb3's batch from sb3's weights: the parameter step (flat), its exact
    mean KL, backtracks."""
    load_sb3(agent, state)
    params = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]
    theta = parameters_to_vector(params).clone()
    obs, actions, advantages, old_logprobs = data
    advantages = trpo.normalize_advantages(advantages)
    with torch.no_grad():
        old_params = agent.policy_params(obs)
    out = agent.policy_params(obs)
    objective = trpo.surrogate(agent.log_prob_entropy(out, actions)[0], old_logprobs, advantages)
    g = trpo.flat_grad(objective, params, retain_graph=True)
    fvp = trpo.fisher_vector_product(agent, out, params, damping)  # v -> (F + damping I) v
    full_step, _, _ = trpo.natural_step(trpo.conjugate_gradient(fvp, g, cg_iters), g, fvp, max_kl)
    batch = (obs, actions, old_logprobs, old_params, advantages)
    surrogate_kl = lambda: trpo.surrogate_and_kl(agent, *batch)  # noqa: E731
    _, backtracks = trpo.line_search(params, full_step, surrogate_kl, surrogate_kl()[0], max_kl,
                                     0.8, 10)
    return parameters_to_vector(params).detach() - theta, surrogate_kl()[1], backtracks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-ids", nargs="+",
                        default=["CartPole-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3,
                        help="sb3-contrib iterations before the compared one")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                      "trpo_vs_sb3_contrib.md"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rows = []
    for env_id in args.env_ids:
        data, before, after, logged_kl, space = sb3_update(env_id, args.seed, args.warmup)
        d = space.shape[0] if isinstance(space, gym.spaces.Box) else 1
        agent = trpo.Agent(data[0].shape[1], space, trpo.Args(norm_obs=False))
        names = [name for name, _ in agent.named_parameters() if not name.startswith("critic.")]
        theirs = torch.cat([(after[sb3_name(n)] - before[sb3_name(n)]).reshape(-1) for n in names])
        # sb3-contrib's step measured our way: the exact mean KL of the joint distribution
        with torch.no_grad():
            old_params = load_sb3(agent, before).policy_params(data[0])
            new_params = load_sb3(agent, after).policy_params(data[0])
            joint_kl = trpo.mean_kl(agent, old_params, new_params).item()
        # the zoo's MuJoCo / CartPole presets
        cg_iters = 25 if isinstance(space, gym.spaces.Box) else 10
        settings = [("trpo.py's settings", MAX_KL, DAMPING)]
        if d > 1:  # a categorical, or one action dimension: nothing to rescale
            settings.append((f"x d = {d}", MAX_KL * d, DAMPING * d))
        for label, max_kl, damping in settings:
            ours, kl, backtracks = our_step(agent, before, data, max_kl, damping, cg_iters)
            cosine = torch.nn.functional.cosine_similarity(ours, theirs, 0).item()
            rows.append(f"| {env_id} | {label}: max KL {max_kl:g}, damping {damping:g} | "
                        f"{cosine:.6f} | {ours.norm().item():.4f} / {theirs.norm().item():.4f} | "
                        f"{kl:.4f} / {joint_kl:.4f} | {logged_kl:.4f} | {backtracks} |")
            print(rows[-1], flush=True)
    import stable_baselines3
    import sb3_contrib
    with open(args.out, "w") as f:
        f.write("# One TRPO update: trpo.py against sb3-contrib, same batch, same weights\n\n")
        f.write(f"`$PEERS_PYTHON benchmarks/trpo_vs_sb3_contrib.py --env-ids "
                f"{' '.join(args.env_ids)} --seed {args.seed} --warmup {args.warmup}`\n\n")
        f.write(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; sb3-contrib "
                f"{sb3_contrib.__version__}, stable-baselines3 {stable_baselines3.__version__}, "
                f"torch {torch.__version__}. sb3-contrib's TRPO (zoo preset, max KL {MAX_KL}, "
                f"damping {DAMPING}) is trained for {args.warmup} iterations; its next update's "
                "batch and weights are given to trpo.py's functions. KL: the exact mean KL of the "
                "joint action distribution after the step (ours / sb3-contrib's step, measured the "
                "same way); sb3-contrib logs its own KL, averaged over the action dimensions "
                "too.\n\n")
        f.write("| env | trpo.py run with | cosine(step ours, step sb3-contrib) | step norm ours / "
                "sb3-contrib | joint KL ours / sb3-contrib | KL sb3-contrib logs | our backtracks "
                "|\n|---|---|---:|---:|---:|---:|---:|\n")
        f.write("\n".join(rows) + "\n")
    print(f"wrote {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
