"""Synchronous advantage actor-critic, A2C (the synchronous variant of A3C, Mnih et al. 2016).

Each iteration collects a segment of num_envs x num_steps transitions (the envs run on across
segments), bootstraps the advantage from the critic, and takes one gradient step on

    L(theta) = -E[log pi_theta(a|s) A] + c_v 0.5 E[(V_theta(s) - R)^2] - c_e H[pi_theta]
    A = r + gamma (1 - terminated) V_old(s') - V_old(s),  R = A + V_old(s)     (the TD error)

A and R come first, from the critic before the step, held constant; then one joint step moves actor
and critic, as in the A3C and GAE papers (the lecture refits V first, then computes A: one more
pass for the same use of the data). A time limit bootstraps from V(final obs), a termination not.
--gae-lambda mixes in n-step returns up to the segment's end (1: A3C's n-step advantage).

Discrete actions: a categorical policy; Box actions: a diagonal Gaussian with a state-independent
log-std. Continuous control normalises observations and scales rewards by default. The defaults
are rl-baselines3-zoo's A2C for CartPole-v1 with Adam and a decaying rate (SB3: RMSprop, constant);
--rmsprop takes the paper's and SB3's optimizer, as the MuJoCo preset does.

    python actor_critic.py                           # CartPole-v1: 8 envs x 5 steps, TD(0)
    python actor_critic.py --env-id HalfCheetah-v5 --total-timesteps 1000000 --num-envs 1 \
        --num-steps 5 --gae-lambda 1.0 --rmsprop --no-anneal-lr  # MuJoCo preset: SB3's A2C
    python actor_critic.py --eval-checkpoint runs/RUN/actor_critic.pt --capture-video
"""

import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.distributions import Categorical, Distribution, Independent, Normal, kl_divergence

from gae import compute_gae

Distribution.set_default_validate_args(False)
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # filming needs no display (SDL: "error:")


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (letters, digits, '.', '_', '-'); the model is {exp_name}.pt"""
    seed: Optional[int] = None
    """seed of python, numpy, torch and the envs, in [0, 2**32); default 1, or the checkpoint's"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = False
    """train on the GPU (tiny MLPs are usually faster on the CPU)"""
    torch_threads: int = 1
    """CPU threads for torch; one is fastest for tiny MLPs"""
    track: bool = False
    """log to Weights and Biases (WANDB_MODE=offline runs without network)"""
    wandb_project_name: str = "policy-gradients"
    """the wandb project name"""
    wandb_entity: Optional[str] = None
    """the wandb entity (team)"""
    capture_video: bool = False
    """film the evaluation episodes to runs/{run_name}/videos"""
    save_model: bool = False
    """save weights, normalisation statistics and args in runs/{run_name}/ (also on Ctrl-C)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end of training (0: none)"""
    eval_checkpoint: Optional[str] = None
    """evaluate this saved .pt file instead of training (with --eval-episodes, --capture-video)"""

    # Algorithm specific arguments
    env_id: str = "CartPole-v1"
    """the id of the Gymnasium environment"""
    total_timesteps: int = 500000
    """total environment steps of the experiment"""
    learning_rate: float = 7e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel environments"""
    num_steps: int = 5
    """the number of steps to run in each environment per rollout"""
    anneal_lr: bool = True
    """decay the learning rate linearly to zero"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.0
    """the lambda of GAE: 0 gives the one-step TD error, 1 the n-step return to the segment's end"""
    norm_adv: bool = False
    """standardise the advantages (mean 0, std 1) for the policy's step"""
    ent_coef: float = 0.0
    """coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the gradient"""
    rmsprop: bool = False
    """RMSprop (alpha 0.99, eps 1e-5), the A2C paper's and SB3's optimizer, in place of Adam"""
    shared_network: bool = False
    """one 2 x 64 tanh trunk under a policy head and a value head (default: separate networks)"""
    # Switches whose default (None) depends on the env: on for continuous actions, off for discrete.
    norm_obs: tyro.conf.DisallowNone[Optional[bool]] = None
    """normalise observations by a running mean/std, frozen at evaluation"""
    norm_reward: tyro.conf.DisallowNone[Optional[bool]] = None
    """divide rewards by the running std of the discounted return"""


def policy_gradient_loss(logprobs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-mean_t[log pi(a_t|s_t) w_t]: its gradient is minus the score-function estimate
    mean_t[grad log pi(a_t|s_t) w_t]. The weights (returns or advantages) are constants."""
    return -(logprobs * weights.detach()).mean()


def value_loss(values, returns, old_values=None, clip_coef: Optional[float] = None):
    """0.5 E[(V(s) - R)^2], the critic's regression on its target; with clip_coef, OpenAI baselines'
    0.5 E[max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)]."""
    loss = (values - returns) ** 2
    if clip_coef is not None:
        clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
        loss = torch.max(loss, (clipped - returns) ** 2)
    return 0.5 * loss.mean()


def normalize_advantages(advantages: torch.Tensor) -> torch.Tensor:
    """(A - mean A) / (std A + 1e-8) over the batch (PPO: the minibatch): the step's size no longer
    scales with the rewards, and the mean acts as one more baseline."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def mean_kl(agent: "Agent", old_params: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """KLbar = E_s[KL(pi_old(.|s) || pi_theta(.|s))], exact, from the distributions' parameters."""
    return kl_divergence(agent.dist(old_params), agent.dist(params)).mean()


class Agent(nn.Module):
    """Separate 2 x 64 tanh actor and critic, or (shared_network) one trunk under both heads. The
    policy is a tensor of parameters (logits, or the Gaussian's mean and log-std)."""

    def __init__(self, obs_dim: int, action_space: gym.Space, args: Args):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        n_out = action_space.shape[0] if self.continuous else int(action_space.n)
        self.obs_norm = RunningNorm(obs_dim) if args.norm_obs else nn.Identity()
        self.critic = mlp(obs_dim, 1, std=1.0)
        self.actor = (nn.Sequential(*self.critic[:4], linear(64, n_out, std=0.01))  # the critic's
                      if args.shared_network else mlp(obs_dim, n_out, std=0.01))  # tanh layers
        if self.continuous:  # log sigma per action dimension, the same in every state
            self.actor_logstd = nn.Parameter(torch.zeros(n_out))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.obs_norm(obs)).squeeze(-1)

    def policy_params(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(self.obs_norm(obs))
        return torch.cat([out, self.actor_logstd.expand_as(out)], -1) if self.continuous else out

    def dist(self, params: torch.Tensor) -> Distribution:
        if not self.continuous:
            return Categorical(logits=params)
        mean, logstd = params.chunk(2, dim=-1)
        return Independent(Normal(mean, logstd.exp()), 1)

    def log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor):
        """log pi(a|s) and H[pi(.|s)], dist(params)'s values in fewer ops: categorical log
        softmax(z)_a and -sum p log p; Gaussian sum_i log N(a_i; mu_i, sigma_i) and
        sum_i log(sigma_i sqrt(2 pi e))."""
        if not self.continuous:
            log_p = params.log_softmax(-1)
            return log_p.gather(-1, actions[..., None]).squeeze(-1), -(log_p.exp() * log_p).sum(-1)
        mean, logstd = params.chunk(2, dim=-1)
        log_prob = -0.5 * ((actions - mean) / logstd.exp()) ** 2 - logstd - 0.5 * math.log(math.tau)
        return log_prob.sum(-1), (logstd + 0.5 * math.log(math.tau * math.e)).sum(-1)


def train(args: Args) -> None:
    check_args(args)
    rng, device = seed_everything(args)
    envs = gym.vector.SyncVectorEnv([lambda: make_env(args.env_id)] * args.num_envs, copy=False,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs_dim, action_space = envs.single_observation_space.shape[0], envs.single_action_space
    set_env_defaults(args, action_space)
    buffers = rollout_buffers(args, envs)  # numpy, (T, N, ...), reused by every rollout
    obs_buf, next_obs_buf, action_buf, reward_buf, terminated_buf, done_buf = buffers
    agent = Agent(obs_dim, action_space, args).to(device)
    parameters = list(agent.parameters())  # one list, reused by every gradient clipping
    optimizer = (torch.optim.RMSprop(parameters, lr=args.learning_rate, alpha=0.99, eps=1e-5,
                                     foreach=True) if args.rmsprop
                 else torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5, fused=True))
    return_norm, running_return = RunningNorm(()).to(device), torch.zeros(args.num_envs).to(device)
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size
    run = Run(args)
    global_step, observation = 0, envs.reset(seed=args.seed)[0]
    episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)

    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        # Rollout: num_steps steps of every env with pi_old (the envs run on across rollouts).
        episodes = []
        with torch.inference_mode():
            sample = make_sampler(agent, rng, observation)
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs_buf[step] = observation
                action_buf[step] = sample(obs_buf[step])
                observation, reward_buf[step], terminated_buf[step], truncated, infos = envs.step(
                    env_action(action_buf[step], action_space))
                done_buf[step] = terminated_buf[step] | truncated  # it may end both ways at once
                next_obs_buf[step] = observation
                episode_return += reward_buf[step]
                episode_length += 1
                if "final_obs" in infos:  # s_{t+1} of an episode that ended: its final observation
                    ended = np.flatnonzero(infos["_final_obs"])
                    next_obs_buf[step, ended] = np.stack(infos["final_obs"][ended])
                    episodes += [(global_step, episode_return[i], episode_length[i]) for i in ended]
                    episode_return[ended], episode_length[ended] = 0, 0
        run.log_episodes(episodes)

        # Advantages with V_old: a truncated episode bootstraps from V(final obs), a terminated not.
        obs, next_obs, actions, rewards, terminated, dones = [torch.from_numpy(b).to(device)
                                                              for b in buffers]
        values, next_values = agent.value(torch.cat([obs, next_obs])).chunk(2)  # V(s) with gradient
        with torch.no_grad():  # the TD target r + gamma (1 - terminated) V_old(s') and A: constants
            if args.norm_reward:
                rewards, running_return = scale_rewards(rewards, dones, args.gamma, running_return,
                                                        return_norm)
            advantages = compute_gae(rewards, values, next_values, terminated, dones, args.gamma,
                                     args.gae_lambda)
            returns = advantages + values

        # One gradient step on the whole segment, policy and value loss together.
        b_obs, b_actions, b_advantages, b_returns = (
            x.flatten(0, 1) for x in (obs, actions, advantages, returns))
        if args.norm_adv:
            b_advantages = normalize_advantages(b_advantages)
        old_params = agent.policy_params(b_obs)
        logprobs, entropy = agent.log_prob_entropy(old_params, b_actions)
        pg_loss = policy_gradient_loss(logprobs, b_advantages)
        v_loss = value_loss(values.flatten(), b_returns)
        entropy = entropy.mean()
        loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * entropy
        run.check_finite(global_step, loss=loss, policy=pg_loss, value=v_loss)

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)
        optimizer.step()

        with torch.no_grad():
            kl = mean_kl(agent, old_params.detach(), agent.policy_params(b_obs)).item()
        update_obs_norm(agent, b_obs, args.env_id, global_step)
        pg_loss, v_loss, entropy = pg_loss.item(), v_loss.item(), entropy.item()
        run.log_iteration(global_step, {
            "charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/policy_loss": pg_loss,
            "losses/value_loss": v_loss, "losses/entropy": entropy, "losses/kl": kl,
            "losses/explained_variance": explained_variance(values.detach(), returns)})
        if run.stopping:
            break

    envs.close()
    run.finish(agent, global_step, return_norm=return_norm.state_dict())


# ================================================================================================
# Plumbing, the same bytes in every script (tests/test_family.py keeps them so; docs/plumbing.md
# explains them): checks, envs, normalisation, sampling, logs, Ctrl-C, checkpoints, evaluation.
# ================================================================================================

RULES = [  # (rule, test, the family's flags it covers: a script checks those it has)
    ("must be positive", lambda v: v > 0, "total_timesteps learning_rate num_envs num_steps max_kl "
     "num_minibatches update_epochs max_grad_norm torch_threads clip_coef target_kl vf_iters "
     "cg_iters vf_learning_rate backtrack_iters kl_coef kl_target vf_clip_coef"),
    ("must be in [0, 1]", lambda v: 0 <= v <= 1, "gamma gae_lambda"),
    ("must be >= 0", lambda v: v >= 0, "ent_coef vf_coef cg_damping eval_episodes"),
    ("must be in (0, 1)", lambda v: 0 < v < 1, "backtrack_coef"),
    ("must be in [0, 2**32)", lambda v: 0 <= v < 2**32, "seed")]


def check_args(args: Args) -> None:
    """Bad input: a one-line error before anything is built or written (NaN fails every rule)."""
    problems = [f"--{name.replace('_', '-')} {rule}, got {value}" for rule, ok, names in RULES
                for name in names.split() if (value := getattr(args, name, None)) is not None
                and not (math.isfinite(value) and ok(value))]
    if not re.fullmatch(r"[\w.-]+", args.exp_name) or not args.exp_name.strip("."):
        problems.append(f"--exp-name {args.exp_name!r}: use letters, digits, '.', '_' and '-' only")
    batch, minibatches = args.num_envs * args.num_steps, getattr(args, "num_minibatches", 1)
    if not problems and batch % minibatches:
        problems.append(f"--num-minibatches {minibatches} does not divide the batch of {batch}")
    elif not problems and args.norm_adv and batch // minibatches < 2:
        problems.append(f"(mini)batches of {batch // minibatches} sample: advantage normalisation "
                        "needs 2 or more (raise --num-steps or lower --num-minibatches)")
    elif not problems and args.total_timesteps < batch and args.eval_checkpoint is None:
        problems.append(f"--total-timesteps {args.total_timesteps} is less than a batch ({batch})")
    if args.cuda and not torch.cuda.is_available():
        problems.append("--cuda was given but CUDA is not available")
    if args.eval_checkpoint is not None and not os.path.isfile(args.eval_checkpoint):
        problems.append(f"--eval-checkpoint {args.eval_checkpoint}: no such file")
    if problems:
        sys.exit(f"error: {problems[0]}")


def seed_everything(args: Args) -> tuple[np.random.Generator, torch.device]:
    """Seeds python, numpy and torch; returns the rollout's action generator and the device."""
    args.seed = 1 if args.seed is None else args.seed
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    return np.random.default_rng(args.seed), torch.device("cuda" if args.cuda else "cpu")


class DropStepInfo(gym.Wrapper):
    """Drops the step's info: nothing reads it, and a vector env merges it key by key every step."""

    def step(self, action):
        return *self.env.step(action)[:4], {}


def make_env(env_id: str, **kwargs) -> gym.Env:
    """gym.make(env_id) with one flat observation vector (Discrete: one-hot; Tuple, Dict, n-D Box:
    concatenated). A space the policy cannot take is a one-line error."""
    try:
        env = gym.make(env_id, **kwargs)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            env = gym.wrappers.FlattenObservation(env)
    except Exception as e:  # unknown id, missing dependency, unimportable module
        sys.exit(f"error: cannot make environment {env_id!r}: {type(e).__name__}: {e}"
                 .replace("\n", " "))
    obs, act = env.observation_space, env.action_space
    if not (isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1 and obs.shape[0] > 0):
        sys.exit(f"error: {env_id} has observation space {obs}; supported: a Box, Discrete, "
                 "MultiDiscrete, MultiBinary, or a Tuple or Dict of them (flattened to one vector)")
    box = isinstance(act, gym.spaces.Box) and len(act.shape) == 1 and act.shape[0] > 0
    if not (isinstance(act, gym.spaces.Discrete) or box and act.dtype.kind == "f"):  # no int Box
        sys.exit(f"error: {env_id} has action space {act}; supported: Discrete (categorical "
                 "policy) or a 1-D float Box (Gaussian policy)")
    return DropStepInfo(env)


def set_env_defaults(args: Args, action_space: gym.Space) -> None:
    """The switches left to the env: normalisation on for continuous actions, off for discrete."""
    continuous = isinstance(action_space, gym.spaces.Box)
    args.norm_obs = continuous if args.norm_obs is None else args.norm_obs
    args.norm_reward = continuous if args.norm_reward is None else args.norm_reward


def env_action(action: np.ndarray, space: gym.Space) -> np.ndarray:
    """The action the env takes: clipped to a Box (training keeps the draw); Discrete: start + i."""
    if isinstance(space, gym.spaces.Box):
        return np.clip(action, space.low, space.high)
    return action + space.start


def linear(n_in: int, n_out: int, std: float = np.sqrt(2)) -> nn.Linear:
    """A linear layer with orthogonal weights of gain std and zero biases."""
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


def mlp(n_in: int, n_out: int, std: float) -> nn.Sequential:
    """Two tanh layers of 64 units, then a linear output whose weights have gain std."""
    return nn.Sequential(linear(n_in, 64), nn.Tanh(), linear(64, 64), nn.Tanh(),
                         linear(64, n_out, std))


class RunningNorm(nn.Module):
    """Running mean and variance (Chan et al.'s parallel update), starting at 0 and 1 as SB3's
    VecNormalize; normalises as clip((x - mean) / std)."""

    def __init__(self, shape, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(1e-4))

    def update(self, x: torch.Tensor) -> None:
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var = m2 / total
        self.count = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


def update_obs_norm(agent: Agent, obs: torch.Tensor, env_id: str, global_step: int) -> None:
    """Moves the observation statistics, once per iteration after the update (pi_old and the update
    saw the same inputs). A non-finite observation would poison them: a one-line error instead."""
    if isinstance(agent.obs_norm, RunningNorm):
        if not torch.isfinite(obs).all():
            sys.exit(f"error: {env_id} returned a non-finite observation (by step {global_step})")
        agent.obs_norm.update(obs)


def scale_rewards(rewards, dones, gamma: float, running_return, return_norm, valid=None):
    """SB3's VecNormalize reward scaling: R_t = gamma R_{t-1} + r_t per env (restarted after each
    episode end, carried across rollouts) moves a running variance; rewards are divided by its std
    (not centred) and clipped to +-10. valid: the steps that count. Returns them and the carry R."""
    r, keep = rewards.cpu().numpy(), dones.logical_not().cpu().numpy()  # flags read as booleans
    returns, carry = np.empty_like(r), running_return.cpu().numpy()
    for t in range(len(r)):
        carry = gamma * carry + r[t]
        returns[t] = carry
        carry = carry * keep[t]
    returns = torch.from_numpy(returns).to(rewards.device)
    return_norm.update(returns.flatten() if valid is None else returns[valid])
    scaled = (rewards / torch.sqrt(return_norm.var + return_norm.eps)).clamp(-10, 10)
    return scaled, torch.from_numpy(carry).to(rewards.device)


TWINS_CHECKED = weakref.WeakKeyDictionary()  # agent -> "categorical", "normal" or None (no twin)


def make_sampler(agent: Agent, rng: np.random.Generator, probe: np.ndarray) -> Callable:
    """obs -> actions drawn from pi, for one rollout: a numpy twin of obs_norm and agent.actor (each
    call costs less than torch's), then Gumbel-max or mean + std N(0, 1). The twin is used only if
    every layer has one here and, checked on the agent's first rollout, it reproduces agent.dist on
    the probe observations; else torch samples, slower but the same policy."""
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731  (on the CPU a view, no copy)
    twins = {nn.Sequential: None, nn.Identity: None, nn.Tanh: lambda m: np.tanh,
             nn.ReLU: lambda m: lambda x: np.maximum(x, 0),
             nn.Linear: lambda m: lambda x, w=numpy(m.weight).T, b=numpy(m.bias): x @ w + b,
             RunningNorm: lambda m: lambda x, mu=numpy(m.mean), s=numpy((m.var + m.eps).rsqrt()):
                 np.clip((x - mu) * s, -m.clip, m.clip)}
    device = next(agent.parameters()).device

    def policy(obs: np.ndarray) -> Distribution:  # pi(.|obs) as the losses see it
        with torch.no_grad():
            obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
            return agent.dist(agent.policy_params(obs))

    modules = [agent.obs_norm, *(m for _, m in agent.actor.named_modules(remove_duplicate=False))]
    layers = [twins[type(m)](m) for m in modules if twins[type(m)]] if all(
        type(m) in twins for m in modules) else None

    def forward(x: np.ndarray) -> np.ndarray:
        for layer in layers:
            x = layer(x)
        return x

    if layers is not None and agent not in TWINS_CHECKED:
        out, probed = forward(np.asarray(probe, dtype=np.float32)), policy(probe)
        same = lambda t, x: np.allclose(numpy(t), x, 1e-4, 1e-5, equal_nan=True)  # noqa: E731
        normal = isinstance(getattr(probed, "base_dist", None), Normal)
        TWINS_CHECKED[agent] = (
            "categorical" if isinstance(probed, Categorical) and same(
                probed.logits, out - np.logaddexp.reduce(out, -1, keepdims=True))
            else "normal" if normal and same(probed.mean, out) and same(
                probed.stddev, numpy(probed.stddev[:1]) + 0 * out) else None)
    kind = TWINS_CHECKED.get(agent) if layers is not None else None
    if kind == "categorical":
        def categorical(obs: np.ndarray) -> np.ndarray:  # argmax(z + Gumbel noise) ~ softmax(z)
            logits = forward(obs)
            return (logits + rng.gumbel(size=logits.shape)).argmax(-1)
        return categorical
    if kind == "normal":
        std = numpy(policy(np.asarray(probe)[:1]).stddev[0])  # this rollout's std

        def normal(obs: np.ndarray) -> np.ndarray:  # mean + std N(0, 1)
            mean = forward(obs)
            return mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
        return normal
    return lambda obs: policy(obs).sample().cpu().numpy()


def rollout_buffers(args: Args, envs: gym.vector.VectorEnv) -> list[np.ndarray]:
    """obs, next_obs, actions, rewards, terminated, dones of a rollout, (T, N, ...), in numpy. Made
    at the start: a rollout too big for memory is a one-line error before anything is written."""
    shape, space = (args.num_steps, args.num_envs), envs.single_action_space
    try:
        obs = np.zeros(shape + envs.single_observation_space.shape, np.float32)
        actions = np.zeros(shape + space.shape, np.int64 if space.shape == () else np.float32)
        flags = np.zeros(shape, bool), np.zeros(shape, bool)
        return [obs, np.zeros_like(obs), actions, np.zeros(shape, np.float32), *flags]
    except MemoryError:
        sys.exit(f"error: a rollout of {args.num_envs} envs x {args.num_steps} steps does not fit "
                 "in memory; lower --num-steps or --num-envs")


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """1 - Var[y - y_pred] / Var[y]: the share of the returns' spread the critic explains."""
    var_y = y_true.var()
    return float("nan") if var_y == 0 else (1 - (y_true - y_pred).var() / var_y).item()


class Run:
    """A training run's outputs: runs/{run_name}/, never shared, with metrics.jsonl (strict JSON,
    NaN as null) and wandb (--track); a progress line per iteration; Ctrl-C, which stops after the
    iteration and keeps metrics and model (again: abort); the checkpoint and the evaluation."""

    def __init__(self, args: Args):
        if args.capture_video and args.eval_episodes:
            check_can_render(args.env_id)  # now, not after training
        env_name = args.env_id.split(":")[-1].replace("/", "-")  # "module:ns/Name-v0" -> ns-Name-v0
        name = os.path.join("runs", f"{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}")
        for self.dir in [name] + [f"{name}-{n}" for n in range(2, 1000)]:  # same second: name-2
            try:
                os.makedirs(self.dir)
                break
            except FileExistsError:
                continue
            except OSError as e:
                sys.exit(f"error: cannot create the run directory {self.dir}: {e.strerror}")
        else:
            sys.exit(f"error: {name}: too many runs of this name")
        print(f"run directory: {self.dir}", flush=True)
        self.args, self.wandb = args, None
        self.file = open(os.path.join(self.dir, "metrics.jsonl"), "w")
        if args.track:
            try:
                import wandb

                wandb.init(project=args.wandb_project_name, entity=args.wandb_entity,
                           config=asdict(args), name=os.path.basename(self.dir), dir=self.dir,
                           save_code=True)
            except Exception as e:  # not logged in, no network, not installed
                sys.exit(f"error: --track: wandb did not start ({type(e).__name__}: {e}); run "
                         "`wandb login` or set WANDB_MODE=offline".replace("\n", " "))
            wandb.define_metric("*", step_metric="global_step")
            self.wandb = wandb
        self.returns, self.start, self.stopping = deque(maxlen=100), time.perf_counter(), False
        self.flushed = 0.0  # when the outputs were last flushed
        self.main_thread = threading.current_thread() is threading.main_thread()  # gets the signals
        self.previous = signal.signal(signal.SIGINT, self.ctrl_c) if self.main_thread else None

    def ctrl_c(self, signum, frame) -> None:
        self.stopping = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts
        print("\nCtrl-C: stopping after this iteration (again: abort)", file=sys.stderr, flush=True)

    def check_finite(self, global_step: int, **values) -> None:
        """A NaN or infinite loss stops the run in one line: it would train on, and save, NaN."""
        values = {name: torch.as_tensor(value).item() for name, value in values.items()}
        if not all(math.isfinite(value) for value in values.values()):
            detail = ", ".join(f"{name} {value:.4g}" for name, value in values.items())
            sys.exit(f"error: the update became non-finite at step {global_step} ({detail}); lower "
                     "the learning rate or step size, or check the env's observations and rewards")

    def log(self, global_step: int, values: dict) -> None:
        row = {"global_step": global_step, **{k: (v if math.isfinite(v) else None)
                                               for k, v in values.items()}}
        self.file.write(json.dumps(row, allow_nan=False) + "\n")
        if self.wandb:
            self.wandb.log(row)

    def log_episodes(self, episodes: list) -> None:
        """Each finished episode's (global step at its end, return, length)."""
        for global_step, episode_return, length in episodes:
            self.returns.append(float(episode_return))
            self.log(global_step, {"charts/episodic_return": float(episode_return),
                                   "charts/episodic_length": int(length)})

    def log_iteration(self, global_step: int, values: dict) -> None:
        now = time.perf_counter()
        sps = int(global_step / (now - self.start))
        self.log(global_step, {"charts/SPS": sps, **values})
        mean_return = f"{np.mean(self.returns):.1f}" if self.returns else "n/a"
        eta = max(self.args.total_timesteps - global_step, 0) / max(sps, 1)
        flush = now - self.flushed > 1  # once a second at most: a flush outlasts a short rollout
        if flush:
            self.file.flush()
            self.flushed = now
        print(f"step {global_step}/{self.args.total_timesteps} | SPS {sps} | return {mean_return} "
              f"| ETA {eta:.0f}s", flush=flush)

    def finish(self, agent: Agent, global_step: int, **state) -> None:
        """Saves the model and `state` if asked (atomically: no truncated file); evaluates it."""
        if self.main_thread:
            signal.signal(signal.SIGINT, self.previous)
        args, path = self.args, os.path.join(self.dir, f"{self.args.exp_name}.pt")
        if args.save_model:
            try:
                torch.save({"script": os.path.basename(__file__), "model": agent.state_dict(),
                            **state, "args": asdict(args)}, f"{path}.tmp")
                os.replace(f"{path}.tmp", path)
            except (OSError, RuntimeError) as e:  # disk full, directory gone
                sys.exit(f"error: cannot write the checkpoint {path} ({type(e).__name__}: {e})")
            finally:  # whatever stopped the write (that error, a second Ctrl-C), no .tmp is left
                if os.path.exists(f"{path}.tmp"):
                    os.remove(f"{path}.tmp")
            print(f"model saved to {path}")
        if args.eval_episodes and not self.stopping:
            returns = evaluate(agent.eval(), args.env_id, args.eval_episodes, args.seed + 10_000,
                               os.path.join(self.dir, "videos") if args.capture_video else None)
            self.log(global_step, {"eval/episodic_return": float(np.mean(returns))})
        self.file.close()
        if self.wandb:
            self.wandb.finish()
        if self.stopping:
            sys.exit(f"interrupted at step {global_step}/{args.total_timesteps}; see {self.dir}")


def check_can_render(env_id: str) -> None:
    """--capture-video fails now, not after training, if the env draws no RGB frames or the video
    writer (moviepy, imported by gymnasium's RecordVideo) is missing."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        sys.exit("error: --capture-video needs moviepy (in requirements.txt): pip install moviepy")
    try:
        env = gym.make(env_id, render_mode="rgb_array")
        env.reset(seed=0)
        frame, mode = env.render(), env.render_mode
        env.close()
    except Exception as e:
        sys.exit(f"error: --capture-video: {env_id} cannot render ({type(e).__name__}: {e}); "
                 "for MuJoCo set MUJOCO_GL=egl or MUJOCO_GL=osmesa".replace("\n", " "))
    if mode != "rgb_array" or not (isinstance(frame, np.ndarray) and frame.ndim == 3
                                   and frame.shape[2] == 3):
        sys.exit(f"error: --capture-video: {env_id} draws no RGB frames (render_mode {mode!r}, "
                 f"a frame of {type(frame).__name__} {getattr(frame, 'shape', '')})")


EVAL_MAX_STEPS = 10_000  # the longest evaluation episode of an env without a time limit


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int, video_dir=None) -> list[float]:
    """Returns of deterministic episodes (argmax, or the Gaussian's mean), normalisation frozen."""
    env = make_env(env_id, **({"render_mode": "rgb_array"} if video_dir else {}))  # not all take it
    if env.spec.max_episode_steps is None:  # no time limit: an episode need not end
        print(f"note: {env_id} has no time limit: evaluation episodes stop at {EVAL_MAX_STEPS}")
        env = gym.wrappers.TimeLimit(env, EVAL_MAX_STEPS)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, lambda _: True, disable_logger=True)
    device, returns = next(agent.parameters()).device, []
    for episode in range(episodes):
        (obs, _), done = env.reset(seed=seed + episode), False
        returns.append(0.0)
        while not done:
            with torch.inference_mode():
                obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
                action = agent.dist(agent.policy_params(obs)).mode.cpu().numpy()
            obs, reward, terminated, truncated, _ = env.step(env_action(action, env.action_space))
            returns[-1], done = returns[-1] + float(reward), terminated or truncated
    env.close()
    print(f"eval/episodic_return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {episodes} "
          f"deterministic episodes of {env_id}" + (f"; videos in {video_dir}" if video_dir else ""))
    return returns


def evaluate_checkpoint(args: Args) -> None:
    """--eval-checkpoint: evaluate (and film) a saved model, loaded with weights_only: tensors and
    plain values, never code. The saved seed (the default) replays training's final evaluation."""
    check_args(args)
    torch.set_num_threads(args.torch_threads)
    device, path = torch.device("cuda" if args.cuda else "cpu"), args.eval_checkpoint
    script = os.path.basename(__file__)
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # torch's message would advise weights_only=False, which runs the file's code
        sys.exit(f"error: {path} is not a checkpoint of {script} (not tensors saved by torch.save)")
    try:
        if checkpoint.get("script") not in (None, script):  # None: a file from before the key
            raise ValueError(f"saved by {checkpoint['script']}")  # another algorithm's args
        saved = Args(**checkpoint["args"])
        env = make_env(saved.env_id)
        agent = Agent(env.observation_space.shape[0], env.action_space, saved).to(device)
        agent.load_state_dict(checkpoint["model"])
    except Exception as e:  # another script's file, a missing key, the shapes of another env
        reason = " ".join(str(e).split())[:100]  # one line: a size mismatch's detail is the second
        sys.exit(f"error: {path} is not a checkpoint of {script} ({type(e).__name__}: {reason})")
    if args.capture_video:
        check_can_render(saved.env_id)
    own = ("eval_checkpoint", "eval_episodes", "capture_video", "seed", "cuda", "torch_threads")
    ignored = [f"--{k.replace('_', '-')}" for k, v in asdict(args).items() if v != getattr(Args, k)
               and k not in own]
    if ignored:  # the env, sizes and normalisation are the checkpoint's
        print(f"note: {', '.join(ignored)} ignored: the model is evaluated as it was trained "
              f"({saved.env_id})")
    seed = saved.seed if args.seed is None else args.seed
    evaluate(agent.eval(), saved.env_id, max(args.eval_episodes, 1), seed + 10_000,
             os.path.join(os.path.dirname(path), "videos") if args.capture_video else None)


if __name__ == "__main__":
    try:
        args = tyro.cli(Args)
        evaluate_checkpoint(args) if args.eval_checkpoint else train(args)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop
        sys.exit("interrupted")
