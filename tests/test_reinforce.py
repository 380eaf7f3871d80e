"""The math of reinforce.py (checks 1 and 2 of IMPLEMENTATION_NOTES.md), its whole-episode batches
and the reward scaling they feed."""

import glob
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import reinforce
from conftest import read_metrics
from exact_gradients import (DTYPE, bandit, per_episode_gradients, random_mdp, sample_episodes,
                             total_variance, z_scores)
from reinforce import Args, episode_returns, policy_gradient_loss

SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, every iteration's keys, bad input
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--total-timesteps", "128",
             "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/entropy",
             "losses/kl"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"],
                                   "--total-timesteps 50 is less than a batch (64)"),
        "zero rollout": (["--num-steps", "0"], "--num-steps must be positive"),
        "zero gradient norm": (["--max-grad-norm", "0"], "--max-grad-norm must be positive"),
        "negative entropy coefficient": (["--ent-coef", "-0.1"], "--ent-coef must be >= 0"),
        "batch of one": (["--num-envs", "1", "--num-steps", "1", "--total-timesteps", "8"],
                         "(mini)batches of 1 sample: advantage normalisation needs 2 or more"),
    },
}
Z = 4.5  # |z| bound for a correct estimator (several components: a little above the usual 4)
PRIOR = 1e-4  # RunningNorm's starting count: a pseudo-sample of mean 0 and variance 1


def test_episode_returns_by_hand():
    """Column 0: episodes [1, 2] and [3, 4, 5]; column 1: one episode [1, 1, 1], then padding.
    gamma = 0.5. Catches: rewards from before t in G_t, no restart at an episode end, the
    reward-to-go switch inverted, R(tau) not discounted from the episode's start."""
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 0.0], [5.0, 0.0]],
                           dtype=DTYPE)
    dones = torch.tensor([[0, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=torch.bool)
    to_go = torch.tensor([[2.0, 1.75], [2.0, 1.5], [6.25, 1.0], [6.5, 0.0], [5.0, 0.0]],
                         dtype=DTYPE)
    whole = torch.tensor([[2.0, 1.75], [2.0, 1.75], [6.25, 1.75], [6.25, 0.0], [6.25, 0.0]],
                         dtype=DTYPE)
    torch.testing.assert_close(episode_returns(rewards, dones, 0.5, reward_to_go=True), to_go)
    torch.testing.assert_close(episode_returns(rewards, dones, 0.5, reward_to_go=False), whole)
    # flags read as booleans: a step both terminated and truncated, passed as 2.0, just ends it
    twos = dones.to(DTYPE) * 2
    torch.testing.assert_close(episode_returns(rewards, twos, 0.5, reward_to_go=False), whole)
    torch.testing.assert_close(episode_returns(rewards[:, 0], twos[:, 0], 0.5, reward_to_go=True),
                               to_go[:, 0])


def pooled_statistics(samples) -> tuple[float, float, float]:
    """Mean, variance and count of `samples` pooled with RunningNorm's prior (a pseudo-sample of
    weight PRIOR, mean 0, variance 1): the first two moments of the mixture, in float64."""
    x = torch.as_tensor(samples, dtype=torch.float64).flatten()
    count = PRIOR + len(x)
    mean = x.sum() / count
    second_moment = (PRIOR * 1.0 + (x**2).sum()) / count
    return mean.item(), (second_moment - mean**2).item(), count


def assert_statistics(return_norm, samples) -> None:
    """return_norm (a RunningNorm) holds the pooled statistics of the prior and `samples`."""
    mean, var, count = pooled_statistics(samples)
    assert return_norm.count.item() == pytest.approx(count, rel=1e-6)
    assert return_norm.mean.item() == pytest.approx(mean, rel=1e-5, abs=1e-6)
    assert return_norm.var.item() == pytest.approx(var, rel=1e-5, abs=1e-6)


def test_reward_scaling_return_restarts_after_each_episode_end():
    """scale_rewards' discounted return R_t = gamma R_{t-1} + r_t, by hand with gamma = 0.5 and
    reward 1: column 0 ends an episode at t = 1, column 1 at t = 2 (flags read as booleans: 2.0
    ends it like 1.0). R is not returned: it is seen in the statistics it moves (the RunningNorm's
    mean, variance and count), in the rewards divided by their std (not centred) and in the carry
    (R where no episode ended at the last step, else 0). With a valid mask the padding is left out
    of the statistics. Catches: no restart, a restart one step late, the carry not reset at an end,
    padding counted, dividing by the variance, centring the rewards."""
    rewards = torch.ones(4, 2)
    expected = torch.tensor([[1.0, 1.0], [1.5, 1.5], [1.0, 1.75], [1.5, 1.0]])
    for dones in (torch.tensor([[0, 0], [1, 0], [0, 1], [0, 0]], dtype=torch.bool),
                  torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])):
        return_norm = reinforce.RunningNorm(())
        scaled, carry = reinforce.scale_rewards(rewards, dones, 0.5, torch.zeros(2), return_norm)
        assert_statistics(return_norm, expected)
        std = math.sqrt(pooled_statistics(expected)[1])
        torch.testing.assert_close(scaled, rewards / std)
        torch.testing.assert_close(carry, torch.tensor([1.5, 1.0]))
    # the last step ends both episodes: nothing is carried; the padding (valid False) is not counted
    dones = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    valid = torch.tensor([[1, 1], [1, 1], [1, 1], [1, 0]], dtype=torch.bool)
    return_norm = reinforce.RunningNorm(())
    _, carry = reinforce.scale_rewards(rewards, dones, 0.5, torch.zeros(2), return_norm, valid)
    assert_statistics(return_norm, [1.0, 1.0, 1.5, 1.5, 1.0, 1.75, 1.5])
    torch.testing.assert_close(carry, torch.zeros(2))


def test_bandit_score_function_gradient_and_a_constant_baseline():
    """Check 1: softmax bandit, exact grad J = pi * (r - J). The score-function estimate through the
    script's loss agrees within a few standard errors; subtracting a constant b = J keeps the mean
    and lowers the variance. Catches: the loss's sign flipped, a sum where the mean belongs (the
    estimate scales with the batch)."""
    mdp = bandit([10.0, 11.0, 8.0, 12.0], reward_noise=1.0)  # all rewards far from 0: a baseline
    theta = torch.tensor([[0.3, -0.2, 0.5, 0.0]], dtype=DTYPE)
    pi = theta.softmax(-1)
    J = (pi * mdp.r).sum()
    exact = pi * (mdp.r - J)
    batch = sample_episodes(mdp, theta, columns=40_000, episodes_per_column=1, seed=1)
    returns = episode_returns(batch.rewards, batch.dones, mdp.gamma, reward_to_go=True)
    plain = per_episode_gradients(theta, batch, policy_gradient_loss, lambda copies: returns)
    baselined = per_episode_gradients(theta, batch, policy_gradient_loss,
                                      lambda copies: returns - J)
    assert z_scores(plain, exact).abs().max() < Z
    assert z_scores(baselined, exact).abs().max() < Z
    assert total_variance(baselined) < 0.1 * total_variance(plain)
    assert z_scores(plain, -exact).abs().max() > 3 * Z  # enough samples to see a sign error


def test_tabular_mdp_autograd_matches_the_policy_gradient_theorem():
    """Check 2, exact part: autograd of J = rho0^T (I - gamma P_pi)^-1 r_pi equals the
    policy-gradient-theorem sum; dropping gamma^t (the convention of the reward-to-go estimator)
    gives a visibly different vector here."""
    mdp = random_mdp(seed=0)
    theta = torch.randn(3, 2, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    theta.requires_grad_()
    (autograd,) = torch.autograd.grad(mdp.J(theta), theta)
    torch.testing.assert_close(autograd, mdp.pgt_gradient(theta, drop_discount=False), rtol=1e-10,
                               atol=1e-12)
    assert (mdp.pgt_gradient(theta, drop_discount=True) - autograd).abs().max() > 0.2


@pytest.fixture(scope="module")
def mdp_episodes():
    mdp = random_mdp(seed=0)
    theta = torch.randn(3, 2, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    batch = sample_episodes(mdp, theta, columns=20_000, episodes_per_column=2, seed=2)
    return mdp, theta, batch


def test_reinforce_estimators_agree_with_the_gradients_they_estimate(mdp_episodes):
    """Check 2, sampled part: two whole episodes per column, as the script stores them. The
    reward-to-go estimate agrees with the gamma^t-dropped gradient (the convention reinforce.py
    states), and is told apart from the exact one; the whole-episode estimate R(tau) agrees with the
    exact gradient and has the larger variance. Catches: the reward-to-go switch inverted, no
    restart at episode ends (the first episode's returns would take in the second's rewards),
    rewards from before t in G_t."""
    mdp, theta, batch = mdp_episodes
    exact = mdp.pgt_gradient(theta, drop_discount=False)
    dropped = mdp.pgt_gradient(theta, drop_discount=True)
    estimates = {}
    for to_go in (True, False):
        weights = episode_returns(batch.rewards, batch.dones, mdp.gamma, reward_to_go=to_go)
        estimates[to_go] = per_episode_gradients(theta, batch, policy_gradient_loss,
                                                 lambda copies: weights)
    assert z_scores(estimates[True], dropped).abs().max() < Z
    assert z_scores(estimates[True], exact).abs().max() > 3 * Z
    assert z_scores(estimates[False], exact).abs().max() < Z
    assert z_scores(estimates[False], dropped).abs().max() > 3 * Z
    assert total_variance(estimates[True]) < 0.8 * total_variance(estimates[False])


def train_toy(tmp_path, monkeypatch, name: str, **overrides):
    """Train in-process on toy/Count-v0 (reward 1 per step, cut by a time limit after 5 steps),
    recording the weights every policy-gradient loss sees; returns them and metrics.jsonl's rows."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    seen = []
    real_loss = reinforce.policy_gradient_loss
    monkeypatch.setattr(reinforce, "policy_gradient_loss",
                        lambda lp, w: seen.append(w.clone()) or real_loss(lp, w))
    monkeypatch.chdir(tmp_path)
    settings = dict(env_id="toy/Count-v0", num_envs=2, num_steps=3, total_timesteps=20, gamma=1.0,
                    norm_adv=False, eval_episodes=0)
    reinforce.train(Args(exp_name=name, **{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return seen, read_metrics(run_dir)


@pytest.mark.parametrize("num_steps, episodes_per_env", [(3, 1), (5, 1), (6, 2), (7, 2)])
def test_batches_hold_whole_episodes(num_steps, episodes_per_env, tmp_path, monkeypatch):
    """Every env runs num_steps steps, then finishes the episode in flight: each 5-step episode is
    trained on whole, with returns-to-go 5, 4, 3, 2, 1 (a time limit ends it with the return it
    got), and every batch starts new ones. Catches: a batch cut at num_steps (a partial episode
    trained on as if it were whole)."""
    seen, metrics = train_toy(tmp_path, monkeypatch, f"whole{num_steps}", num_steps=num_steps,
                              total_timesteps=10 * episodes_per_env * 2)
    expected = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0] * 2 * episodes_per_env)
    assert len(seen) == 2
    assert all(torch.equal(w.sort().values, expected.sort().values) for w in seen)
    iterations = [m["global_step"] for m in metrics if "charts/SPS" in m]
    assert iterations == [10 * episodes_per_env, 20 * episodes_per_env]  # every step, once
    episodes = [m for m in metrics if "charts/episodic_return" in m]
    assert len(episodes) == 4 * episodes_per_env
    assert all(m["charts/episodic_return"] == 5.0 and m["charts/episodic_length"] == 5
               for m in episodes)


def test_whole_episode_weights_in_the_loop(tmp_path, monkeypatch):
    """--no-reward-to-go weights every step of an episode by its whole return, here 5
    (gamma = 1)."""
    seen, _ = train_toy(tmp_path, monkeypatch, "whole_return", reward_to_go=False)
    assert all(torch.equal(w, torch.full((10,), 5.0)) for w in seen)


def test_learning_rate_decays_linearly_to_zero(tmp_path, monkeypatch):
    """Batches of exactly 10 steps (2 envs, one 5-step episode each): the rate follows the env
    steps 0, 10, 20, 30 of a 40-step budget."""
    _, metrics = train_toy(tmp_path, monkeypatch, "anneal", num_steps=5, total_timesteps=40,
                           learning_rate=1e-3)
    assert [m["charts/learning_rate"] for m in metrics if "charts/SPS" in m] == pytest.approx(
        [1e-3, 0.75e-3, 0.5e-3, 0.25e-3])


def steps_into_episodes(dones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(j, left): for each step of a time-major batch, the steps before it in its episode and the
    steps from it to the episode's end (itself included), counted from the done flags."""
    j, left = torch.zeros(dones.shape), torch.zeros(dones.shape)
    for t in range(1, len(dones)):
        j[t] = torch.where(dones[t - 1], 0, j[t - 1] + 1)
    left[-1] = 1
    for t in reversed(range(len(dones) - 1)):
        left[t] = torch.where(dones[t], 1, left[t + 1] + 1)
    return j, left


def check_batch_scaling(calls, steps, gamma: float) -> list:
    """The scale_rewards calls of a whole-episode script on CartPole (reward 1 per step), each
    recorded as (dones, carry, valid, mean, var, count) after the call, against the env steps
    logged: a zero carry, the valid mask counting every env step once (with padding somewhere),
    and the running statistics of the return pooled by hand over every valid step so far.
    Returns, per call, (valid, steps left in each step's episode, the expected variance)."""
    assert all(valid is not None for _, _, valid, *_ in calls)
    assert any(not valid.all() for _, _, valid, *_ in calls)  # episodes of different lengths: pads
    so_far, checked = [], []
    for (dones, carry, valid, mean, var, count), before, after in zip(calls, steps, steps[1:]):
        assert int(valid.sum()) == after - before  # every env step, once
        assert torch.equal(carry, torch.zeros(2))
        j, left = steps_into_episodes(dones)
        so_far += ((1 - gamma ** (j + 1)) / (1 - gamma))[valid].tolist()
        expected_mean, expected_var, expected_count = pooled_statistics(so_far)
        assert count.item() == pytest.approx(expected_count, rel=1e-6)
        assert mean.item() == pytest.approx(expected_mean, rel=1e-5)
        assert var.item() == pytest.approx(expected_var, rel=1e-5)
        checked.append((valid, left, expected_var))
    return checked


def test_reward_scaling_in_the_loop(tmp_path, monkeypatch):
    """End to end on CartPole (reward 1 per step) with --norm-reward, gamma 0.9: every batch starts
    new episodes, so scale_rewards gets a zero carry; it gets the valid mask, so the statistics it
    moves are those of R_t = 1 + gamma + ... + gamma^j over the valid steps of every batch so far
    (j: the step's index in its episode, by hand), padding left out; and the returns G weighting the
    loss (--no-norm-adv) are those of the scaled rewards, 1 / std per step (the padding is not
    trained on). Catches: a carry that is not zero, the valid mask not passed, padding marked valid,
    the raw rewards used for G."""
    gamma, calls, seen = 0.9, [], []
    real_scale, real_loss = reinforce.scale_rewards, reinforce.policy_gradient_loss

    def recorded_scale(rewards, dones, gamma_, running_return, return_norm, valid=None):
        calls.append((dones.clone(), running_return.clone(), valid))
        out = real_scale(rewards, dones, gamma_, running_return, return_norm, valid)
        calls[-1] += (return_norm.mean.clone(), return_norm.var.clone(),
                      return_norm.count.clone())
        return out

    monkeypatch.setattr(reinforce, "scale_rewards", recorded_scale)
    monkeypatch.setattr(reinforce, "policy_gradient_loss",
                        lambda lp, w: seen.append(w.clone()) or real_loss(lp, w))
    monkeypatch.chdir(tmp_path)
    reinforce.train(Args(exp_name="scaled", num_envs=2, num_steps=8, total_timesteps=100,
                         gamma=gamma, norm_reward=True, norm_adv=False, eval_episodes=0))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*__scaled__*"))
    steps = [0] + [m["global_step"] for m in read_metrics(run_dir) if "charts/SPS" in m]
    assert len(calls) == len(seen) == len(steps) - 1 >= 2
    for (valid, left, expected_var), weights in zip(check_batch_scaling(calls, steps, gamma), seen):
        to_go = (1 - gamma**left) / (1 - gamma) / math.sqrt(expected_var + 1e-8)
        torch.testing.assert_close(weights.sort().values, to_go[valid].sort().values)


def train_cartpole(tmp_path, monkeypatch, name: str, **overrides) -> list[dict]:
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=32, total_timesteps=256, eval_episodes=0)
    reinforce.train(Args(exp_name=name, **{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return [m for m in read_metrics(run_dir) if "charts/SPS" in m]


def test_gradient_clipping_limits_the_step(tmp_path, monkeypatch):
    """With a global gradient norm clipped to 1e-9, Adam (eps 1e-5) barely moves: the policy stays
    put."""
    free = train_cartpole(tmp_path, monkeypatch, "free")
    clipped = train_cartpole(tmp_path, monkeypatch, "clipped", max_grad_norm=1e-9)
    assert free[0]["losses/kl"] > 1e-3
    assert clipped[0]["losses/kl"] < 1e-5 * free[0]["losses/kl"]


def test_entropy_bonus_raises_the_entropy(tmp_path, monkeypatch):
    """A large entropy coefficient keeps the policy near uniform (the first Adam steps move every
    weight by about the learning rate, whatever the loss, so not exactly); with its sign flipped
    the policy collapses."""
    rows = train_cartpole(tmp_path, monkeypatch, "bonus", ent_coef=10.0, learning_rate=1e-2,
                          anneal_lr=False, total_timesteps=512)
    assert all(m["losses/entropy"] > math.log(2) - 0.01 for m in rows)


def test_a_batch_of_one_is_refused_with_advantage_normalisation():
    """--norm-adv standardises over the batch: one sample has no std (NaN). Without it, one sample
    is a valid batch."""
    with pytest.raises(SystemExit, match=r"\(mini\)batches of 1 sample"):
        reinforce.check_args(Args(num_envs=1, num_steps=1, total_timesteps=8))
    reinforce.check_args(Args(num_envs=1, num_steps=1, total_timesteps=8, norm_adv=False))


def test_tuple_observations_are_flattened():
    """Blackjack-v1 observes a Tuple of three Discrete spaces: the policy's input is their
    concatenated one-hots (32 + 11 + 2 = 45, three of them set)."""
    env = reinforce.make_env("Blackjack-v1")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (45,) and obs.shape == (45,)
    assert sorted(set(obs.tolist())) == [0.0, 1.0] and obs.sum() == 3


def test_rollout_samples_the_gaussian_with_its_std():
    """The rollout's sampler (numpy twin) of a Gaussian policy with stds 3 and 0.5: the draws have
    the policy's mean and std."""
    agent = reinforce.Agent(3, gym.spaces.Box(-1, 1, (2,)), Args(norm_obs=False))
    with torch.no_grad():
        agent.actor_logstd.copy_(torch.tensor([3.0, 0.5]).log())
    probe = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    sample = reinforce.make_sampler(agent, np.random.default_rng(1), probe)
    assert sample.__name__ == "normal"  # the numpy twin, not torch's fallback
    draws = np.stack([sample(probe) for _ in range(4000)])  # (4000, 8, 2)
    with torch.no_grad():
        mean = agent.policy_params(torch.from_numpy(probe))[:, :2].numpy()
    np.testing.assert_allclose(draws.std(0), np.broadcast_to([3.0, 0.5], (8, 2)), rtol=0.06)
    assert np.abs(draws.mean(0) - mean).max() < 4 * 3.0 / 4000**0.5


# One-line mistakes that this suite must catch (`python tests/mutants.py --only reinforce`):
# (name, file, exact text, its replacement[, text, replacement ...]).
MUTANTS = [
    ("reinforce: the rollout samples with std 1", "reinforce.py",
     "return mean + std * rng.standard_normal(mean.shape, dtype=np.float32)",
     "return mean + rng.standard_normal(mean.shape, dtype=np.float32)"),
    ("reinforce: batch of one sample accepted with --norm-adv", "reinforce.py",
     "elif not problems and args.norm_adv and batch // minibatches < 2:", "elif False:"),
    ("reinforce: Discrete/Tuple observations not flattened (refused)", "reinforce.py",
     "env = gym.wrappers.FlattenObservation(env)", "pass"),
    ("reinforce: reward-to-go switch inverted", "reinforce.py", "    if reward_to_go:\n",
     "    if not reward_to_go:\n"),
    ("reinforce: reward-to-go not restarted at episode ends", "reinforce.py",
     "returns = discounted_reward_to_go(rewards, dones, gamma)",
     "returns = discounted_reward_to_go(rewards, torch.zeros_like(dones), gamma)"),
    ("reinforce: R(tau) not restarted at episode ends", "reinforce.py",
     "starts[1:] = dones[:-1] != 0", "starts[1:] = False"),
    ("reinforce: R(tau) undiscounted", "reinforce.py",
     "returns = discounted_reward_to_go(rewards, dones, gamma)\n    if reward_to_go:\n"
     "        return returns\n",
     "returns = discounted_reward_to_go(rewards, dones, gamma)\n    if reward_to_go:\n"
     "        return returns\n    returns = discounted_reward_to_go(rewards, dones, 1.0)\n"),
    ("reinforce: reward-to-go includes rewards from before t (gae.reward_to_go run forward)",
     "gae.py", "for t in reversed(range(len(xs))):", "for t in range(len(xs)):"),
    ("reinforce: reward-scaling return not restarted", "reinforce.py",
     "carry = carry * keep[t]", "pass"),
    ("reinforce: reward-scaling return restarted one step late", "reinforce.py",
     "carry = carry * keep[t]", "carry = carry * keep[t - 1]"),
    ("reinforce: reward-scaling return not restarted at a batch (a carry that is not zero)",
     "reinforce.py", "torch.zeros(args.num_envs).to(device)",
     "torch.ones(args.num_envs).to(device)"),
    ("reinforce: reward-scaling statistics take in the padding (valid not passed)", "reinforce.py",
     "valid)  # every batch starts new episodes", ")  # every batch starts new episodes"),
    ("reinforce: the returns G from the raw rewards (the scaled ones dropped)", "reinforce.py",
     "rewards, _ = scale_rewards(", "_, _ = scale_rewards("),
    ("reinforce: policy loss sign flipped", "reinforce.py",
     "return -(logprobs * weights.detach()).mean()", "return (logprobs * weights.detach()).mean()"),
    ("reinforce: loss summed over steps, not averaged", "reinforce.py",
     "return -(logprobs * weights.detach()).mean()", "return -(logprobs * weights.detach()).sum()"),
    ("reinforce: partial episodes trained on as if whole", "reinforce.py",
     "while in_flight.any():", "while in_flight.any() and step < args.num_steps:"),
    ("reinforce: padding trained on (marked valid)", "reinforce.py",
     "done_row, valid_row = ~in_flight, in_flight.copy()",
     "done_row, valid_row = ~in_flight, np.ones_like(in_flight)"),
    ("reinforce: no learning-rate decay", "reinforce.py",
     'optimizer.param_groups[0]["lr"] = frac * args.learning_rate', "pass"),
    ("reinforce: no gradient clipping", "reinforce.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
    ("reinforce: entropy bonus sign flipped", "reinforce.py",
     "loss = pg_loss - args.ent_coef * entropy", "loss = pg_loss + args.ent_coef * entropy"),
]
