"""Vanilla policy gradient with a learned baseline (Spinning Up's VPG): REINFORCE minus V(s).

Batches of whole episodes as in reinforce.py (every env steps num_steps steps, then finishes the episode it is
in). A separate critic V(s) is the baseline: with V from before this batch's fit, held constant,

    A_t = G_t - V(s_t),   G_t = sum_{k>=t} gamma^(k-t) r_k (+ gamma^(T-t) V(s_T) where a time limit cut the episode)
    L_pi(theta) = -mean_t[log pi_theta(a_t|s_t) A_t]                   (one Adam step per batch)
    L_V(phi)    = 0.5 mean_t[(V_phi(s_t) - G_t)^2]                      (then --vf-iters Adam steps, full batch)

Subtracting a function of the state leaves the expected gradient unchanged and lowers its variance. The policy is
updated first, then V is refitted by Monte-Carlo regression on the returns. As in reinforce.py the gamma^t factor
of the exact discounted gradient is dropped. --gae-lambda below 1 replaces G_t - V(s_t) by GAE(gamma, lambda)
(gae.compute_gae): lower variance, but biased unless V is exact; lambda = 1 (the default) is G_t - V(s_t).
Advantages are standardised per batch (--norm-adv).

    python vpg_baseline.py                                # CartPole-v1
    python vpg_baseline.py --gae-lambda 0.97              # GAE advantages
    python vpg_baseline.py --eval-checkpoint runs/RUN/vpg_baseline.pt --capture-video   # evaluate a saved model
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
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames for videos need no display (and SDL would print an "error:")


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment: letters, digits, '.', '_', '-' (the checkpoint is runs/{run_name}/{exp_name}.pt)"""
    seed: Optional[int] = None
    """seed of python, numpy, torch and the environments, in [0, 2**32); None: 1 for training, the saved seed for
    --eval-checkpoint (which then replays the end-of-training evaluation)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = False
    """train on the GPU (tiny MLPs are usually faster on the CPU)"""
    torch_threads: int = 1
    """CPU threads for torch; one is fastest for tiny MLPs"""
    track: bool = False
    """log to Weights and Biases (set WANDB_MODE=offline to run without network)"""
    wandb_project_name: str = "policy-gradients"
    """the wandb project name"""
    wandb_entity: Optional[str] = None
    """the wandb entity (team)"""
    capture_video: bool = False
    """film the evaluation episodes to runs/{run_name}/videos"""
    save_model: bool = False
    """save weights, normalisation statistics and args to runs/{run_name}/{exp_name}.pt (also on Ctrl-C)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end of training (0 to skip)"""
    eval_checkpoint: Optional[str] = None
    """evaluate this saved .pt file instead of training (with --eval-episodes, --capture-video, --seed)"""

    # Algorithm specific arguments
    env_id: str = "CartPole-v1"
    """the id of the Gymnasium environment (episodic: every episode must end, by itself or by a time limit)"""
    total_timesteps: int = 500000
    """total environment steps of the experiment"""
    learning_rate: float = 1e-2
    """the learning rate of the policy's optimizer"""
    num_envs: int = 4
    """the number of parallel environments"""
    num_steps: int = 128
    """steps per env per batch, after which each env finishes the episode it is in (so a batch has at least
    num_envs x num_steps steps, all of them in whole episodes)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to zero"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 1.0
    """the lambda of generalised advantage estimation (1: A = G - V, the Monte-Carlo advantage)"""
    norm_adv: bool = True
    """standardise the advantages over the batch (mean 0, std 1)"""
    ent_coef: float = 0.0
    """coefficient of the entropy bonus"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the policy's gradient"""
    vf_iters: int = 80
    """Adam steps of value regression per batch (full batch)"""
    vf_learning_rate: float = 1e-3
    """the learning rate of the value function's optimizer"""
    # On/off switches whose default (None) depends on the env: on for continuous actions, off for discrete.
    norm_obs: tyro.conf.DisallowNone[Optional[bool]] = None
    """normalise observations by a running mean/std, frozen at evaluation (default: on for continuous actions)"""
    norm_reward: tyro.conf.DisallowNone[Optional[bool]] = None
    """divide rewards by the running std of the discounted return (default: on for continuous actions)"""


def check_args(args: Args) -> None:
    """Reject bad input with a one-line error before anything is built: everything that could fail at the
    end of a run (names, sizes, the checkpoint path) is checked here, at its start."""
    finite = math.isfinite  # NaN and inf fail every rule below
    rules = [("must be positive", lambda v: finite(v) and v > 0, ["total_timesteps", "learning_rate", "num_envs",
              "num_steps", "max_grad_norm", "vf_iters", "vf_learning_rate", "torch_threads"]),
             ("must be in [0, 1]", lambda v: finite(v) and 0 <= v <= 1, ["gamma", "gae_lambda"]),
             ("must be >= 0", lambda v: finite(v) and v >= 0, ["ent_coef", "eval_episodes"]),
             ("must be in [0, 2**32)", lambda v: v is None or 0 <= v < 2**32, ["seed"])]
    problems = [f"--{name.replace('_', '-')} {rule}, got {getattr(args, name)}"
                for rule, ok, names in rules for name in names if not ok(getattr(args, name))]
    if not re.fullmatch(r"[\w.-]+", args.exp_name) or not args.exp_name.strip("."):
        problems.append(f"--exp-name {args.exp_name!r}: use letters, digits, '.', '_' and '-' only")
    batch_size = args.num_envs * args.num_steps
    if not problems and args.norm_adv and batch_size < 2:
        problems.append(f"a batch of {batch_size} sample: advantage normalisation needs at least 2 "
                        "(raise --num-envs or --num-steps)")
    if not problems and args.total_timesteps < batch_size and args.eval_checkpoint is None:
        problems.append(f"--total-timesteps {args.total_timesteps} is less than one batch ({batch_size})")
    if args.cuda and not torch.cuda.is_available():
        problems.append("--cuda was given but CUDA is not available")
    if args.eval_checkpoint is not None and not os.path.isfile(args.eval_checkpoint):
        problems.append(f"--eval-checkpoint {args.eval_checkpoint}: no such file")
    if problems:
        sys.exit(f"error: {problems[0]}")


def flat_observations(env: gym.Env) -> gym.Env:
    """The observation as one flat vector for the MLP (gymnasium.spaces.flatten): a Discrete state becomes its
    one-hot, a Tuple, Dict, MultiDiscrete or n-D Box is concatenated; a 1-D Box is passed through untouched."""
    space = env.observation_space
    return env if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 else gym.wrappers.FlattenObservation(env)


def make_env(env_id: str, num_envs: int) -> list[gym.Env]:
    """num_envs separate envs, not a vector env: a batch steps only the envs whose episode is still in flight,
    which a vector env (it steps all of them) cannot do. Each is reset by hand when its episode ends."""
    try:
        envs = [flat_observations(gym.make(env_id)) for _ in range(num_envs)]
    except Exception as e:  # unknown id, missing dependency, unimportable module: all the user's to fix
        sys.exit(f"error: cannot make environment {env_id!r}: {type(e).__name__}: {e}".replace("\n", " "))
    obs_space, act_space = envs[0].observation_space, envs[0].action_space
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1 and obs_space.shape[0] > 0):
        sys.exit(f"error: {env_id} has observation space {obs_space}; supported: a Box, Discrete, MultiDiscrete, "
                 "MultiBinary, or a Tuple or Dict of them (flattened to one vector)")
    if not (isinstance(act_space, gym.spaces.Discrete)
            or (isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1 and act_space.shape[0] > 0
                and np.issubdtype(act_space.dtype, np.floating))):  # a Gaussian draws no integers
        sys.exit(f"error: {env_id} has action space {act_space}; supported: Discrete (categorical policy) "
                 "or a 1-D float Box (Gaussian policy)")
    if envs[0].spec is None or envs[0].spec.max_episode_steps is None:  # a batch waits for every episode to end
        print(f"note: {env_id} has no time limit: each episode must end by itself, or a batch never completes",
              file=sys.stderr)
    return envs


def env_action(action: np.ndarray, space: gym.Space) -> np.ndarray:
    """The policy's action as the env takes it: a Box's action clipped to its bounds (the Gaussian is unbounded);
    a Discrete's index i shifted to the action start + i (Discrete(n, start) need not start at 0)."""
    return np.clip(action, space.low, space.high) if isinstance(space, gym.spaces.Box) else action + space.start


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class RunningNorm(nn.Module):
    """Running mean and variance (parallel update of Chan et al.); normalises as clip((x - mean) / std).
    The statistics start at mean 0, variance 1 (as in SB3's VecNormalize), so the first rollout sees raw
    observations clipped to +-10; they are not seeded from the reset observations, whose spread (MuJoCo's
    reset noise is about 0.1) is far below that of the states that follow and would saturate the clip."""

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
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


class Agent(nn.Module):
    """Separate 2 x 64 tanh actor and critic; the policy is described by a tensor of parameters
    (logits, or Gaussian mean and log-std) so the old distribution can be stored and rebuilt exactly."""

    def __init__(self, obs_dim: int, action_space: gym.Space, norm_obs: bool):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        n_out = action_space.shape[0] if self.continuous else int(action_space.n)
        self.obs_norm = RunningNorm(obs_dim) if norm_obs else nn.Identity()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, n_out), std=0.01),
        )
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(n_out))

    def policy_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("critic.")]

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

    def log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a|s) and H[pi(.|s)] straight from the parameters (the same values as dist(params), fewer ops):
        categorical: log softmax(z)_a and -sum p log p; Gaussian: sum_i log N(a_i; mu_i, sigma_i), sum_i log(sigma_i sqrt(2 pi e))."""
        if not self.continuous:
            log_p = params.log_softmax(-1)
            return log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1), -(log_p.exp() * log_p).sum(-1)
        mean, logstd = params.chunk(2, dim=-1)
        log_prob = -0.5 * ((actions - mean) / logstd.exp()) ** 2 - logstd - 0.5 * math.log(2 * math.pi)
        return log_prob.sum(-1), (logstd + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def sampler(self, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
        """s -> a ~ pi(.|s) in numpy, for the rollout's hot path: at a few observations per step torch's dispatch
        (microseconds per call) outweighs the arithmetic, numpy's costs less (README, Speed). Build it once per
        rollout: it holds this iteration's observation statistics and std. It only draws; the log-probs come from
        torch on the whole batch afterwards. Gumbel-max, argmax(logits + Gumbel noise), for a categorical;
        mean + std * N(0, 1) for a Gaussian."""
        numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731  (on the CPU: a view, no copy)
        layers = [(numpy(m.weight).T, numpy(m.bias)) for m in self.actor if isinstance(m, nn.Linear)]  # tanh between
        norm = self.obs_norm
        mean, inv_std, clip = ((numpy(norm.mean), numpy((norm.var + norm.eps).rsqrt()), norm.clip)
                               if isinstance(norm, RunningNorm) else (0, 1, np.inf))
        std = numpy(self.actor_logstd.exp()) if self.continuous else None

        def sample(obs: np.ndarray) -> np.ndarray:
            x = np.clip((obs - mean) * inv_std, -clip, clip)
            for weight, bias in layers[:-1]:
                x = np.tanh(x @ weight + bias)
            weight, bias = layers[-1]
            out = x @ weight + bias
            if not self.continuous:
                return (out + rng.gumbel(size=out.shape)).argmax(-1)
            return out + std * rng.standard_normal(out.shape, dtype=np.float32)
        return sample


def advantages_and_returns(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """G_t, the Monte-Carlo return to the end of t's episode, bootstrapped with V(final obs) where a time limit cut
    it (GAE with lambda = 1, plus V): the value target. A_t = G_t - V(s_t) (lambda = 1), or GAE(gamma, lambda).
    Time-major (T, N) or (T,); flags read as booleans. Returns (advantages, returns)."""
    returns = compute_gae(rewards, values, next_values, terminated, dones, gamma, 1.0) + values
    if gae_lambda == 1:
        return returns - values, returns
    return compute_gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda), returns


def policy_gradient_loss(logprobs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-mean_t[log pi(a_t|s_t) w_t]: its gradient is minus the score-function estimate mean_t[grad log pi w_t].
    The weights (returns, or advantages) are constants: no gradient flows through them."""
    return -(logprobs * weights.detach()).mean()


def value_loss(new_values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """0.5 E[(V(s_t) - G_t)^2]: Monte-Carlo regression of V on the returns."""
    return 0.5 * ((new_values - returns) ** 2).mean()


def normalize_advantages(advantages: torch.Tensor) -> torch.Tensor:
    """(A - mean A) / (std A + 1e-8) over a batch: the policy step's scale no longer depends on the reward's."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def scaling_returns(rewards, dones, gamma: float) -> torch.Tensor:
    """R_t = gamma R_{t-1} + r_t per env, restarted after every episode end (a batch starts with new episodes).
    The loop runs in numpy, as gae.py's do: a step there costs a fraction of torch's per-operation dispatch."""
    r, keep = rewards.cpu().numpy(), dones.logical_not().cpu().numpy()  # flags are booleans whatever their dtype
    returns, running_return = np.empty_like(r), np.zeros_like(r[0])
    for t in range(len(r)):
        running_return = gamma * running_return + r[t]
        returns[t] = running_return
        running_return = running_return * keep[t]
    return torch.from_numpy(returns).to(rewards.device)


def scale_rewards(rewards, dones, valid, gamma: float, return_norm: RunningNorm) -> torch.Tensor:
    """Reward scaling of SB3's VecNormalize: update the running variance of the discounted return R_t (over the
    valid steps), then divide the rewards by its std (not centred, clipped to +-10)."""
    return_norm.update(scaling_returns(rewards, dones, gamma)[valid])
    return (rewards / torch.sqrt(return_norm.var + return_norm.eps)).clamp(-10, 10)


def check_can_render(env_id: str) -> None:
    """--capture-video: fail before training, not after it, if the env cannot draw RGB frames (H x W x 3) or
    the video writer (moviepy, which gymnasium's RecordVideo imports) is missing."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        sys.exit("error: --capture-video needs moviepy: pip install moviepy (it is in requirements.txt)")
    try:
        env = gym.make(env_id, render_mode="rgb_array")
        env.reset(seed=0)
        frame, mode = env.render(), env.render_mode
        env.close()
    except Exception as e:
        sys.exit(f"error: --capture-video: {env_id} cannot render ({type(e).__name__}: {e}); "
                 "for MuJoCo set MUJOCO_GL=egl or MUJOCO_GL=osmesa".replace("\n", " "))
    if mode != "rgb_array" or not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3):
        sys.exit(f"error: --capture-video: {env_id} draws no RGB frames (render_mode {mode!r}, a frame of "
                 f"{type(frame).__name__} {getattr(frame, 'shape', '')})")


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    var_y = y_true.var()
    return float("nan") if var_y == 0 else (1 - (y_true - y_pred).var() / var_y).item()


def create_run_dir(run_name: str) -> str:
    """runs/{run_name}, created exclusively: a run started in the same second with the same name gets
    runs/{run_name}-2 (then -3, ...), so two runs never share metrics or checkpoints."""
    for attempt in range(1, 1000):
        path = os.path.join("runs", run_name if attempt == 1 else f"{run_name}-{attempt}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            sys.exit(f"error: cannot create the run directory {path}: {e.strerror}")
    sys.exit(f"error: runs/{run_name}: too many runs of this name")


def stop_on_ctrl_c() -> dict:
    """Ctrl-C sets stop["requested"]: training ends after the current iteration, keeps its metrics and saves the
    model if asked. A second Ctrl-C interrupts at once. stop["restore"]() puts the previous handler back."""
    stop = {"requested": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: stopping after this iteration (press again to abort at once)", file=sys.stderr, flush=True)

    main_thread = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    if main_thread:
        signal.signal(signal.SIGINT, handler)
    stop["restore"] = lambda: signal.signal(signal.SIGINT, previous) if main_thread else None
    return stop


EVAL_MAX_STEPS = 10_000  # the longest evaluation episode of an env without a time limit


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int, device, video_dir: Optional[str] = None):
    """Deterministic episodes (argmax or Gaussian mean) with frozen normalisation; returns their returns."""
    # render_mode only when filming (not every env takes one); the policy sees the flat observations of training
    env = flat_observations(gym.make(env_id, **({"render_mode": "rgb_array"} if video_dir else {})))
    if env.spec.max_episode_steps is None:  # no time limit: an episode need not end
        print(f"note: {env_id} has no time limit: evaluation episodes stop after {EVAL_MAX_STEPS} steps")
        env = gym.wrappers.TimeLimit(env, EVAL_MAX_STEPS)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, episode_return = False, 0.0
        while not done:
            with torch.inference_mode():
                obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
                action = agent.dist(agent.policy_params(obs_t)).mode.cpu().numpy()
            obs, reward, terminated, truncated, _ = env.step(env_action(action, env.action_space))
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    print(f"eval/episodic_return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {episodes} deterministic "
          f"episodes of {env_id}" + (f"; videos in {video_dir}" if video_dir else ""))
    return returns


def save_checkpoint(path: str, agent: Agent, return_norm: RunningNorm, args: Args) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    tmp = f"{path}.tmp"
    try:
        torch.save({"script": os.path.basename(__file__), "model": agent.state_dict(),
                    "return_norm": return_norm.state_dict(), "args": asdict(args)}, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # disk full, directory gone: say so in one line
        sys.exit(f"error: cannot write the checkpoint {path} ({type(e).__name__}: {e})".replace("\n", " "))
    finally:  # whatever stopped the write (that error, a second Ctrl-C), no half-written .tmp is left behind
        if os.path.exists(tmp):
            os.remove(tmp)


def load_agent(path: str, device) -> tuple[Agent, Args]:
    """Rebuild the agent of a checkpoint; anything wrong with the file is a one-line error, not a traceback."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        if checkpoint.get("script") not in (None, os.path.basename(__file__)):  # None: a file from before the key
            raise ValueError(f"saved by {checkpoint['script']}")  # the same network, but another algorithm's args
        args = Args(**checkpoint["args"])
        (env,) = make_env(args.env_id, 1)
        agent = Agent(env.observation_space.shape[0], env.action_space, args.norm_obs).to(device)
        env.close()
        agent.load_state_dict(checkpoint["model"])
    except Exception as e:  # not a torch file, another script's file, a missing key, shapes of another env
        reason = " ".join(str(e).split())[:300]  # one line: a size mismatch's detail follows its first line
        sys.exit(f"error: {path} is not a checkpoint of {os.path.basename(__file__)} ({type(e).__name__}: {reason})")
    return agent.eval(), args


def evaluate_checkpoint(args: Args) -> None:
    """`--eval-checkpoint PATH`: evaluate (and with --capture-video film) a saved model. With the saved seed
    (the default) it replays the episodes of the end-of-training evaluation."""
    check_args(args)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    agent, saved = load_agent(args.eval_checkpoint, device)
    if args.capture_video:
        check_can_render(saved.env_id)
    video_dir = os.path.join(os.path.dirname(args.eval_checkpoint), "videos") if args.capture_video else None
    ignored = [f"--{name.replace('_', '-')}" for name, value in asdict(args).items() if value != getattr(Args, name)
               and name not in ("eval_checkpoint", "eval_episodes", "capture_video", "seed", "cuda", "torch_threads")]
    if ignored:  # the env, sizes and normalisation are the checkpoint's: say that training flags change nothing
        print(f"note: {', '.join(ignored)} ignored: the model is evaluated as it was trained ({saved.env_id})")
    seed = saved.seed if args.seed is None else args.seed
    evaluate(agent, saved.env_id, max(args.eval_episodes, 1), seed + 10_000, device, video_dir)


def train(args: Args) -> None:
    check_args(args)
    args.seed = 1 if args.seed is None else args.seed

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)  # the rollout's action draws (Agent.sampler)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda else "cpu")

    envs = make_env(args.env_id, args.num_envs)
    observation_space, action_space = envs[0].observation_space, envs[0].action_space
    continuous = isinstance(action_space, gym.spaces.Box)
    args.norm_obs = continuous if args.norm_obs is None else args.norm_obs
    args.norm_reward = continuous if args.norm_reward is None else args.norm_reward
    if args.capture_video and args.eval_episodes:
        check_can_render(args.env_id)

    env_name = args.env_id.split(":")[-1].replace("/", "-")  # "module:ns/Name-v0" -> "ns-Name-v0"
    run_dir = create_run_dir(f"{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}")
    run_name = os.path.basename(run_dir)
    print(f"run directory: {run_dir}", flush=True)
    metrics_file = open(os.path.join(run_dir, "metrics.jsonl"), "w")
    if args.track:
        try:
            import wandb

            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args),
                       name=run_name, dir=run_dir, save_code=True)
        except Exception as e:  # not logged in, no network, not installed
            sys.exit(f"error: --track: wandb did not start ({type(e).__name__}: {e}); run `wandb login` or set "
                     "WANDB_MODE=offline".replace("\n", " "))
        wandb.define_metric("*", step_metric="global_step")

    def log(global_step: int, values: dict) -> None:
        row = {"global_step": global_step, **{k: v if math.isfinite(v) else None for k, v in values.items()}}
        metrics_file.write(json.dumps(row, allow_nan=False) + "\n")  # strict JSON: NaN is logged as null
        if args.track:
            wandb.log(row)

    obs_dim = observation_space.shape[0]
    agent = Agent(obs_dim, action_space, args.norm_obs).to(device)
    parameters = agent.policy_parameters()  # one list (the critic has its own optimizer), reused by every clipping
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5, fused=True)
    value_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.vf_learning_rate, eps=1e-5, fused=True)
    return_norm = RunningNorm(()).to(device)

    global_step, start_time = 0, time.perf_counter()
    recent_returns = deque(maxlen=100)
    stop = stop_on_ctrl_c()
    iteration = 0

    while global_step < args.total_timesteps:
        iteration += 1
        if args.anneal_lr:  # the policy's; the batch size varies, so the schedule follows the env steps
            optimizer.param_groups[0]["lr"] = (1.0 - global_step / args.total_timesteps) * args.learning_rate

        # Rollout of whole episodes: every env starts a new episode; after num_steps steps an env stops at the end
        # of the episode it is in. Rows are time steps; an env that has stopped pads its column (valid False,
        # terminated and done True, reward 0), so no return reaches across into the padding.
        observation = np.stack([env.reset(seed=args.seed + i if iteration == 1 else None)[0]
                                for i, env in enumerate(envs)]).astype(np.float32)
        in_flight = np.ones(args.num_envs, dtype=bool)
        episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)
        rows, episodes, step = [], [], 0
        with torch.inference_mode():
            sample = agent.sampler(rng)
            while in_flight.any():
                stepping = np.flatnonzero(in_flight)
                global_step += len(stepping)
                obs_row = observation.copy()
                action_row = sample(obs_row)
                reward_row, next_obs_row = np.zeros(args.num_envs, dtype=np.float32), obs_row.copy()
                terminated_row, done_row, valid_row = ~in_flight, ~in_flight, in_flight.copy()
                for i in stepping:
                    observation[i], reward_row[i], terminated_row[i], truncated, _ = envs[i].step(
                        env_action(action_row[i], action_space))
                    next_obs_row[i] = observation[i]  # s_{t+1}: the final observation where the episode ended
                    done_row[i] = terminated_row[i] or truncated
                    episode_return[i] += reward_row[i]
                    episode_length[i] += 1
                    if done_row[i]:
                        episodes.append((global_step, episode_return[i], episode_length[i]))
                        episode_return[i], episode_length[i] = 0, 0
                        if step + 1 >= args.num_steps:
                            in_flight[i] = False  # its last episode is whole: this env is done for the batch
                        else:
                            observation[i] = envs[i].reset()[0]
                rows.append((obs_row, next_obs_row, action_row, reward_row, terminated_row, done_row, valid_row))
                step += 1

        for step_of_end, ret, length in episodes:
            recent_returns.append(float(ret))
            log(step_of_end, {"charts/episodic_return": float(ret), "charts/episodic_length": int(length)})

        obs, next_obs, actions, rewards, terminated, dones, valid = (torch.from_numpy(np.stack(b)).to(device)
                                                                     for b in zip(*rows))
        # Advantages with V from before the fit, a constant baseline; a time limit bootstraps from V(final obs).
        with torch.no_grad():
            if args.norm_reward:
                rewards = scale_rewards(rewards, dones, valid, args.gamma, return_norm)
            values = agent.value(obs)
            next_values = agent.value(next_obs)
            advantages, returns = advantages_and_returns(rewards, values, next_values, terminated, dones,
                                                         args.gamma, args.gae_lambda)

        # The policy first: one Adam step on -mean(log pi(a_t|s_t) A_t) over every valid step of the batch.
        b_obs, b_actions, b_advantages, b_returns, b_values = (x[valid] for x in (obs, actions, advantages, returns,
                                                                                  values))
        weights = normalize_advantages(b_advantages) if args.norm_adv else b_advantages
        old_params = agent.policy_params(b_obs)
        logprobs, entropy = agent.log_prob_entropy(old_params, b_actions)
        pg_loss = policy_gradient_loss(logprobs, weights)
        entropy = entropy.mean()
        loss = pg_loss - args.ent_coef * entropy
        if not torch.isfinite(loss):
            sys.exit(f"error: the loss became {loss.item()} at step {global_step} (policy {pg_loss.item()}, "
                     f"entropy {entropy.item()}); try a lower --learning-rate or check the env's observations/rewards")

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)
        optimizer.step()

        # Then V: --vf-iters full-batch Adam steps of regression on the returns.
        v_losses = []
        for _ in range(args.vf_iters):
            v_loss = value_loss(agent.value(b_obs), b_returns)
            value_optimizer.zero_grad(set_to_none=True)
            v_loss.backward()
            value_optimizer.step()
            v_losses.append(v_loss.detach())
        v_loss = torch.stack(v_losses).mean()
        if not torch.isfinite(v_loss):
            sys.exit(f"error: the value loss became {v_loss.item()} at step {global_step}; try a lower --vf-learning-rate "
                     "or check the env's observations/rewards")

        with torch.no_grad():
            kl = kl_divergence(agent.dist(old_params.detach()), agent.dist(agent.policy_params(b_obs))).mean()
            if args.norm_obs:  # statistics move once per iteration so the rollout and the update see the same inputs
                if not torch.isfinite(b_obs).all():
                    sys.exit(f"error: {args.env_id} returned a non-finite observation (by step {global_step}); it would "
                             "poison the observation statistics")
                agent.obs_norm.update(b_obs)
        sps = int(global_step / (time.perf_counter() - start_time))
        log(global_step, {
            "charts/SPS": sps, "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "losses/policy_loss": pg_loss.item(), "losses/value_loss": v_loss.item(),
            "losses/entropy": entropy.item(), "losses/kl": kl.item(),
            "losses/explained_variance": explained_variance(b_values, b_returns),
        })
        metrics_file.flush()
        mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
        eta = max(args.total_timesteps - global_step, 0) / max(sps, 1)
        print(f"step {global_step}/{args.total_timesteps} | SPS {sps} | return {mean_return} | ETA {eta:.0f}s", flush=True)
        if stop["requested"]:
            break

    stop["restore"]()
    for env in envs:
        env.close()
    if args.save_model:
        model_path = os.path.join(run_dir, f"{args.exp_name}.pt")
        save_checkpoint(model_path, agent, return_norm, args)
        print(f"model saved to {model_path}")
    if args.eval_episodes and not stop["requested"]:
        video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
        eval_returns = evaluate(agent.eval(), args.env_id, args.eval_episodes, args.seed + 10_000, device, video_dir)
        log(global_step, {"eval/episodic_return": float(np.mean(eval_returns))})
    metrics_file.close()
    if args.track:
        wandb.finish()
    if stop["requested"]:
        sys.exit(f"interrupted at step {global_step}/{args.total_timesteps}; metrics in {run_dir}")


if __name__ == "__main__":
    try:
        args = tyro.cli(Args)
        evaluate_checkpoint(args) if args.eval_checkpoint else train(args)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop
        sys.exit("interrupted")
