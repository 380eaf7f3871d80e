"""Synchronous advantage actor-critic, A2C (the synchronous variant of A3C, Mnih et al. 2016).

Each iteration collects a fixed-length segment of num_envs x num_steps transitions (the envs run on across
segments), bootstraps the advantage from the critic, and takes ONE gradient step on

    L(theta) = -E[log pi_theta(a|s) A] + c_v 0.5 E[(V_theta(s) - (A + V_old(s)))^2] - c_e H[pi_theta],
    A = delta = r + gamma (1 - terminated) V_old(s') - V_old(s)             (the TD error: GAE with lambda = 0)

V_old is the critic before the step: the advantage and the value target are constants (no gradient flows into
the critic through the policy term). s' is the true next state: a truncated episode (time limit) bootstraps
from V(final obs), a terminated one not. --gae-lambda > 0 mixes in the n-step returns up to the end of the
segment (lambda = 1: A3C's n-step advantage). --shared-network puts both heads on one 2 x 64 tanh trunk.

Discrete actions use a categorical policy, Box actions a diagonal Gaussian with a state-independent
log-std; continuous control normalises observations and scales rewards by default. The defaults are
rl-baselines3-zoo's A2C shape for CartPole-v1 (8 envs x 5 steps, lr 7e-4, no advantage normalisation, no entropy
bonus) with the family's Adam and linear learning-rate decay in place of SB3's RMSprop and constant rate.

    python actor_critic.py                                      # CartPole-v1: 8 envs x 5 steps, TD(0) advantages
    python actor_critic.py --env-id HalfCheetah-v5 --total-timesteps 1000000 --num-envs 16 --gae-lambda 0.95 \
        --ent-coef 0.01                                         # MuJoCo preset (Tianshou's A2C settings)
    python actor_critic.py --eval-checkpoint runs/RUN/actor_critic.pt --capture-video   # evaluate a saved model
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
from torch.distributions import Categorical, Distribution, Independent, Normal

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
    """normalise advantages per batch"""
    ent_coef: float = 0.0
    """coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the gradient"""
    shared_network: bool = False
    """one 2 x 64 tanh trunk under a policy head and a value head (default: separate actor and critic)"""
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
              "num_steps", "max_grad_norm", "torch_threads"]),
             ("must be in [0, 1]", lambda v: finite(v) and 0 <= v <= 1, ["gamma", "gae_lambda"]),
             ("must be >= 0", lambda v: finite(v) and v >= 0, ["ent_coef", "vf_coef", "eval_episodes"]),
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


class DropStepInfo(gym.Wrapper):
    """The env's per-step info, dropped: the script reads none of it, and the vector env would merge it into arrays
    key by key at every step (on HalfCheetah about a tenth of the env step's time). final_obs still arrives: the
    vector env adds it itself."""

    def step(self, action):
        observation, reward, terminated, truncated, _ = self.env.step(action)
        return observation, reward, terminated, truncated, {}


def make_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env in SAME_STEP autoreset mode: every step is a real transition and the
    last observation of a finished episode arrives in infos["final_obs"]. With copy=False the returned
    arrays are reused by the next step, so callers copy them (into the rollout buffers) at once."""
    try:
        envs = gym.make_vec(env_id, num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "copy": False},
                            wrappers=[flat_observations, DropStepInfo])
    except Exception as e:  # unknown id, missing dependency, unimportable module: all the user's to fix
        sys.exit(f"error: cannot make environment {env_id!r}: {type(e).__name__}: {e}".replace("\n", " "))
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1 and obs_space.shape[0] > 0):
        sys.exit(f"error: {env_id} has observation space {obs_space}; supported: a Box, Discrete, MultiDiscrete, "
                 "MultiBinary, or a Tuple or Dict of them (flattened to one vector)")
    if not (isinstance(act_space, gym.spaces.Discrete)
            or (isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1 and act_space.shape[0] > 0
                and np.issubdtype(act_space.dtype, np.floating))):  # a Gaussian draws no integers
        sys.exit(f"error: {env_id} has action space {act_space}; supported: Discrete (categorical policy) "
                 "or a 1-D float Box (Gaussian policy)")
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
    """Separate 2 x 64 tanh actor and critic, or (shared_network) one 2 x 64 tanh trunk under a policy head and a
    value head; the policy is described by a tensor of parameters (logits, or Gaussian mean and log-std)."""

    def __init__(self, obs_dim: int, action_space: gym.Space, norm_obs: bool, shared_network: bool = False):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        n_out = action_space.shape[0] if self.continuous else int(action_space.n)
        self.obs_norm = RunningNorm(obs_dim) if norm_obs else nn.Identity()

        def trunk():
            return [layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh()]

        self.trunk = nn.Sequential(*trunk()) if shared_network else nn.Identity()
        self.critic = nn.Sequential(*([] if shared_network else trunk()), layer_init(nn.Linear(64, 1), std=1.0))
        self.actor = nn.Sequential(*([] if shared_network else trunk()), layer_init(nn.Linear(64, n_out), std=0.01))
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(n_out))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.trunk(self.obs_norm(obs))).squeeze(-1)

    def policy_params(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(self.trunk(self.obs_norm(obs)))
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
        layers = [(numpy(m.weight).T, numpy(m.bias)) for net in (self.trunk, self.actor) for m in net.modules()
                  if isinstance(m, nn.Linear)]  # tanh between
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


def actor_critic_loss(logprobs, advantages, values, returns, entropy, vf_coef: float, ent_coef: float):
    """L = -E[log pi(a|s) A] + c_v 0.5 E[(V(s) - R)^2] - c_e E[H] (A3C's loss, one batch); advantages and returns
    R = A + V_old(s) must carry no gradient. Returns the loss and its three terms. With c_e = 0 the entropy stays
    out of the loss's graph: backward() then skips it (it is only logged)."""
    pg_loss = -(logprobs * advantages).mean()
    v_loss = 0.5 * ((values - returns) ** 2).mean()
    entropy = entropy.mean()
    loss = pg_loss + vf_coef * v_loss
    return (loss - ent_coef * entropy if ent_coef else loss), pg_loss, v_loss, entropy


def normalize_advantages(advantages: torch.Tensor) -> torch.Tensor:
    """(A - mean A) / (std A + 1e-8) over a batch: the policy step's scale no longer depends on the reward's."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def scaling_returns(rewards, dones, gamma: float, running_return: torch.Tensor):
    """R_t = gamma R_{t-1} + r_t per env, restarted after every episode end (terminated or truncated).
    The loop runs in numpy, as gae.py's do: a step there costs a fraction of torch's per-operation dispatch."""
    r, keep = rewards.cpu().numpy(), dones.logical_not().cpu().numpy()  # flags are booleans whatever their dtype
    returns, running_return = np.empty_like(r), running_return.cpu().numpy()
    for t in range(len(r)):
        running_return = gamma * running_return + r[t]
        returns[t] = running_return
        running_return = running_return * keep[t]
    return torch.from_numpy(returns).to(rewards.device), torch.from_numpy(running_return).to(rewards.device)


def scale_rewards(rewards, dones, gamma: float, running_return: torch.Tensor, return_norm: RunningNorm):
    """Reward scaling of SB3's VecNormalize: update the running variance of the discounted return R_t, then
    divide the rewards by its std (not centred, clipped to +-10). Returns the scaled rewards and the carry R."""
    returns, running_return = scaling_returns(rewards, dones, gamma, running_return)
    return_norm.update(returns.flatten())
    return (rewards / torch.sqrt(return_norm.var + return_norm.eps)).clamp(-10, 10), running_return


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
        envs = make_env(args.env_id, 1)
        agent = Agent(envs.single_observation_space.shape[0], envs.single_action_space, args.norm_obs,
                      args.shared_network).to(device)
        envs.close()
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
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)  # the rollout's action draws (Agent.sampler)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda else "cpu")

    envs = make_env(args.env_id, args.num_envs)
    continuous = isinstance(envs.single_action_space, gym.spaces.Box)
    args.norm_obs = continuous if args.norm_obs is None else args.norm_obs
    args.norm_reward = continuous if args.norm_reward is None else args.norm_reward
    if args.capture_video and args.eval_episodes:
        check_can_render(args.env_id)

    # Rollout storage, time-major (T, N, ...), in numpy: moved to the device once per rollout. Allocated before
    # the run directory exists, so a rollout too big for memory is a one-line error that leaves nothing behind.
    # next_obs holds the true s_{t+1}: the final observation where an episode ended.
    obs_dim = envs.single_observation_space.shape[0]
    try:
        obs_buf = np.zeros((args.num_steps, args.num_envs, obs_dim), dtype=np.float32)
        next_obs_buf = np.zeros_like(obs_buf)
        action_buf = np.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape,
                              dtype=np.float32 if continuous else np.int64)
        reward_buf = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        terminated_buf, done_buf = (np.zeros((args.num_steps, args.num_envs), dtype=bool) for _ in range(2))
    except MemoryError:
        sys.exit(f"error: a rollout of {args.num_envs} envs x {args.num_steps} steps does not fit in memory; lower "
                 "--num-steps or --num-envs")
    episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)

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

    agent = Agent(obs_dim, envs.single_action_space, args.norm_obs, args.shared_network).to(device)
    parameters = list(agent.parameters())  # one list, reused by every step's gradient clipping
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5, fused=True)
    return_norm = RunningNorm(()).to(device)
    running_return = torch.zeros(args.num_envs, device=device)

    global_step, start_time = 0, time.perf_counter()
    recent_returns = deque(maxlen=100)
    observation, _ = envs.reset(seed=args.seed)
    stop = stop_on_ctrl_c()

    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        # Rollout with pi_old: the actor only samples; values and log-probs come in one batch afterwards.
        episodes = []
        with torch.inference_mode():
            sample = agent.sampler(rng)
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs_buf[step] = observation
                action_buf[step] = sample(obs_buf[step])
                observation, reward_buf[step], terminated_buf[step], truncated, infos = envs.step(
                    env_action(action_buf[step], envs.single_action_space))
                # An episode can end both ways on one step (its own end at the time limit): done is a logical or.
                done_buf[step] = terminated_buf[step] | truncated
                next_obs_buf[step] = observation
                episode_return += reward_buf[step]
                episode_length += 1
                if "final_obs" in infos:
                    ended = np.flatnonzero(infos["_final_obs"])
                    next_obs_buf[step, ended] = np.stack(infos["final_obs"][ended])
                    episodes += [(global_step, episode_return[i], episode_length[i]) for i in ended]
                    episode_return[ended], episode_length[ended] = 0, 0

        for step_of_end, ret, length in episodes:
            recent_returns.append(float(ret))
            log(step_of_end, {"charts/episodic_return": float(ret), "charts/episodic_length": int(length)})

        # Advantages with V from before the update; truncated steps bootstrap from V(final obs).
        # (On the CPU these tensors share memory with the buffers, which the next rollout overwrites.)
        obs, next_obs, actions, rewards, terminated, dones = (torch.from_numpy(b).to(device) for b in (
            obs_buf, next_obs_buf, action_buf, reward_buf, terminated_buf, done_buf))
        # One gradient step on the whole segment: V(s) and V(s') in one forward pass, V(s) kept with its gradient
        # for the value loss.
        values, next_values = agent.value(torch.cat([obs, next_obs])).chunk(2)
        with torch.no_grad():  # the TD target r + gamma (1 - terminated) V_old(s') and A are constants
            if args.norm_reward:
                rewards, running_return = scale_rewards(rewards, dones, args.gamma, running_return, return_norm)
            advantages = compute_gae(rewards, values, next_values, terminated, dones, args.gamma, args.gae_lambda)
            returns = advantages + values

        # Log-probs recomputed with gradient from the stored obs and actions.
        b_obs, b_actions, b_advantages, b_returns = (x.flatten(0, 1) for x in (obs, actions, advantages, returns))
        if args.norm_adv:
            b_advantages = normalize_advantages(b_advantages)
        logprobs, entropy = agent.log_prob_entropy(agent.policy_params(b_obs), b_actions)
        loss, pg_loss, v_loss, entropy = actor_critic_loss(logprobs, b_advantages, values.flatten(), b_returns,
                                                           entropy, args.vf_coef, args.ent_coef)
        if not torch.isfinite(loss):
            sys.exit(f"error: the loss became {loss.item()} at step {global_step} (policy {pg_loss.item()}, "
                     f"value {v_loss.item()}); try a lower --learning-rate or check the env's observations/rewards")

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)
        optimizer.step()

        with torch.no_grad():
            if args.norm_obs:  # statistics move once per iteration so pi_old and the update see the same inputs
                if not torch.isfinite(b_obs).all():
                    sys.exit(f"error: {args.env_id} returned a non-finite observation (by step {global_step}); it would "
                             "poison the observation statistics")
                agent.obs_norm.update(b_obs)
        pg_loss, v_loss, entropy = torch.stack([pg_loss, v_loss, entropy]).tolist()
        sps = int(global_step / (time.perf_counter() - start_time))
        log(global_step, {
            "charts/SPS": sps, "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "losses/policy_loss": pg_loss, "losses/value_loss": v_loss, "losses/entropy": entropy,
            "losses/explained_variance": explained_variance(values.detach(), returns),
        })
        metrics_file.flush()
        mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
        eta = (args.total_timesteps - global_step) / max(sps, 1)
        print(f"step {global_step}/{args.total_timesteps} | SPS {sps} | return {mean_return} | ETA {eta:.0f}s", flush=True)
        if stop["requested"]:
            break

    stop["restore"]()
    envs.close()
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
