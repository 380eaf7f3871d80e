"""The math of ppo_clip.py (check 8 of IMPLEMENTATION_NOTES.md and the pieces it relies on)."""

import glob
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

import ppo_clip
from conftest import only_run_dir, read_metrics
from ppo_clip import (Agent, Args, RunningNorm, approx_kl, clipped_surrogate, make_sampler,
                      normalize_advantages, scale_rewards, value_loss)


SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, every iteration's keys, bad input
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2",
             "--update-epochs", "2", "--total-timesteps", "128", "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss",
             "losses/entropy", "losses/approx_kl", "losses/clipfrac", "losses/explained_variance",
             "losses/kl", "losses/update_epochs"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"], "is less than a batch (64)"),
        "zero rollout": (["--num-steps", "0"], "--num-steps must be positive"),
        "minibatches do not divide": (["--num-minibatches", "3"],
                                      "--num-minibatches 3 does not divide the batch of 64"),
        "minibatch of one": (["--num-envs", "1", "--num-steps", "4", "--num-minibatches", "4",
                              "--total-timesteps", "8"], "(mini)batches of 1 sample"),
        "zero epochs": (["--update-epochs", "0"], "--update-epochs must be positive"),
        "negative lambda": (["--gae-lambda", "-0.1"], "--gae-lambda must be in [0, 1]"),
        "rollout too big for memory": (["--num-steps", str(10**16), "--total-timesteps",
                                        str(10**17)], "does not fit in memory"),
        "nan target kl": (["--target-kl", "nan"], "--target-kl must be positive"),
        "negative target kl": (["--target-kl", "-0.01"], "--target-kl must be positive"),
    },
}


def agents():
    torch.manual_seed(0)
    return [Agent(3, gym.spaces.Discrete(4), Args(norm_obs=False)),
            Agent(3, gym.spaces.Box(-1, 1, (2,)), Args(norm_obs=True))]


@pytest.mark.parametrize("agent", agents(), ids=["categorical", "gaussian"])
def test_ratio_is_exactly_one_on_the_first_minibatch(agent):
    """pi_old's log-probs come from one batched pass after the rollout; every minibatch of the first
    epoch must see exactly the same numbers again, so r == 1 bit for bit."""
    obs = torch.randn(16, 4, 3) * 5
    if agent.continuous:
        agent.obs_norm.update(obs.flatten(0, 1))
    with torch.no_grad():
        old_params = agent.policy_params(obs)
        actions = agent.dist(old_params).sample()
        old_logprobs, _ = agent.log_prob_entropy(old_params, actions)
    permutation = torch.randperm(64)
    b_obs, b_actions, b_logprobs = (x.flatten(0, 1)[permutation][:16]
                                    for x in (obs, actions, old_logprobs))
    new_logprobs, _ = agent.log_prob_entropy(agent.policy_params(b_obs), b_actions)
    assert torch.equal((new_logprobs - b_logprobs).exp(), torch.ones(16))


def surrogate_grad(ratio: float, advantage: float, clip_coef=0.2) -> float:
    r = torch.tensor([ratio], dtype=torch.float64, requires_grad=True)
    clipped_surrogate(r, torch.tensor([advantage], dtype=torch.float64), clip_coef).backward()
    return r.grad.item()


def test_clipped_surrogate_values():
    ratio = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5, 0.5, 1.5], dtype=torch.float64)
    adv = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    # per sample min(r A, clip(r) A): the pessimistic bound
    expected = -torch.tensor([0.5, 0.9, 1.0, 1.1, 1.2, -0.8, -1.5], dtype=torch.float64).mean()
    torch.testing.assert_close(clipped_surrogate(ratio, adv, 0.2), expected)


@pytest.mark.parametrize("ratio, advantage",
                         [(1.5, 1.0), (1.2 + 1e-6, 2.0), (0.5, -1.0), (0.8 - 1e-6, -3.0)])
def test_gradient_is_zero_where_the_clip_is_active(ratio, advantage):
    """Outside [1 - eps, 1 + eps] on the side that would improve the objective, the clip removes
    the gradient."""
    assert surrogate_grad(ratio, advantage) == 0.0


@pytest.mark.parametrize("ratio, advantage",
                         [(0.5, 1.0), (1.5, -1.0), (1.0, 1.0), (1.1, -2.0), (0.9, 0.7)])
def test_gradient_flows_where_the_unclipped_term_is_the_pessimistic_one(ratio, advantage):
    assert surrogate_grad(ratio, advantage) == pytest.approx(-advantage)  # d/dr -(r A), one sample


def test_value_clip_inactive_within_eps():
    old = torch.randn(64, dtype=torch.float64)
    shift = (torch.rand(64, dtype=torch.float64) * 2 - 1) * 0.2  # |V - V_old| <= eps
    new = (old + shift).requires_grad_()
    returns = torch.randn(64, dtype=torch.float64)
    clipped = value_loss(new, returns, old, 0.2)
    grad_clipped, = torch.autograd.grad(clipped, new)
    plain = value_loss(new, returns, old, None)
    grad_plain, = torch.autograd.grad(plain, new)
    torch.testing.assert_close(clipped, plain)
    torch.testing.assert_close(grad_clipped, grad_plain)
    torch.testing.assert_close(plain, 0.5 * ((new - returns) ** 2).mean())
    torch.testing.assert_close(value_loss(new, returns), plain)  # no old values: no clip


def test_value_clip_keeps_the_larger_loss_outside_eps():
    old, returns = torch.tensor([0.0, 0.0]), torch.tensor([1.0, -1.0])
    new = torch.tensor([2.0, 0.5])  # first: overshoots past the target; second: moved away from it
    # clipped predictions: 0.2 and 0.2 -> losses (0.8^2, 1.2^2); unclipped (1, 1.5^2): the max
    torch.testing.assert_close(value_loss(new, returns, old, 0.2),
                               0.5 * torch.tensor([1.0, 2.25]).mean())


@pytest.mark.parametrize("agent", agents(), ids=["categorical", "gaussian"])
def test_log_prob_and_entropy_match_torch_distributions(agent):
    with torch.no_grad():
        params = agent.policy_params(torch.randn(32, 3)) * 3
        if agent.continuous:
            mean, logstd = params.chunk(2, -1)
            params = torch.cat([mean, torch.randn_like(logstd)], -1)
        dist = agent.dist(params)
        actions = dist.sample()
        log_prob, entropy = agent.log_prob_entropy(params, actions)
    torch.testing.assert_close(log_prob, dist.log_prob(actions))
    torch.testing.assert_close(entropy, dist.entropy())


def test_rollout_actions_follow_the_policy():
    """make_sampler, the rollout's numpy twin of the policy: Gumbel-max draws from softmax(logits);
    the Gaussian has the policy's mean and std. The actor's last layer is set to output fixed logits
    (or means) whatever the observation. Both samplers must be the numpy twins (the torch fallback
    would pass the draws' checks without testing them)."""
    agent_d, agent_c = agents()
    torch.manual_seed(1)
    obs = torch.randn(200_000, 3)
    logits, mean = torch.tensor([2.0, 0.0, -1.0, 0.5]), torch.tensor([1.0, -2.0])
    std = torch.tensor([0.5, 2.0])
    with torch.no_grad():
        for agent, bias in ((agent_d, logits), (agent_c, mean)):
            agent.actor[-1].weight.zero_()
            agent.actor[-1].bias.copy_(bias)
        agent_c.actor_logstd.copy_(std.log())
        rng, probe = np.random.default_rng(1), obs[:8].numpy()
        sample_d, sample_c = make_sampler(agent_d, rng, probe), make_sampler(agent_c, rng, probe)
        assert (sample_d.__name__, sample_c.__name__) == ("categorical", "normal")
        frequencies = torch.bincount(torch.from_numpy(sample_d(obs.numpy())), minlength=4) / 200_000
        draws = torch.from_numpy(sample_c(obs.numpy()))
    torch.testing.assert_close(frequencies, logits.softmax(-1), atol=4e-3, rtol=0)
    torch.testing.assert_close(draws.mean(0), mean, atol=2e-2, rtol=0)
    torch.testing.assert_close(draws.std(0), std, atol=2e-2, rtol=0)


def test_running_norm_matches_whole_data_statistics():
    torch.manual_seed(0)
    scales = torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64)
    data = torch.randn(1000, 3, dtype=torch.float64) * scales + 5
    norm = RunningNorm(3).double()
    for chunk in data.split(137):
        norm.update(chunk)
    # equal up to the prior pseudo-count of 1e-4 samples (mean 0, var 1) the statistics start from
    torch.testing.assert_close(norm.mean, data.mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(norm.var, data.var(0, unbiased=False), rtol=0, atol=1e-5)
    assert norm(torch.full((1, 3), 1e9, dtype=torch.float64)).max() == norm.clip


def test_scaling_returns_reset_after_each_episode_end():
    """scale_rewards' discounted return R_t = gamma R_{t-1} + r_t, by hand: it starts from the carry
    (2), restarts after the episode end at t = 1, and its last value is the next carry. R_t is not
    returned: it moves return_norm, whose statistics must be those of R = (2, 2, 1, 1.5)."""
    rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]], dtype=torch.float64)
    dones = torch.tensor([[False], [True], [False], [False]])
    norm = RunningNorm(()).double()
    carry = torch.tensor([2.0], dtype=torch.float64)
    scaled, carry = scale_rewards(rewards, dones, 0.5, carry, norm)
    returns = np.array([2.0, 2.0, 1.0, 1.5])
    torch.testing.assert_close(carry, torch.tensor([1.5], dtype=torch.float64))
    assert norm.count.item() == pytest.approx(4, abs=2e-4)
    assert norm.mean.item() == pytest.approx(returns.mean(), abs=1e-4)
    assert norm.var.item() == pytest.approx(returns.var(), abs=1e-4)
    torch.testing.assert_close(scaled, rewards / np.sqrt(returns.var()), rtol=1e-3, atol=0)


def test_gaussian_starts_with_unit_std_and_small_mean():
    _, agent = agents()
    params = agent.policy_params(torch.randn(10, 3))
    mean, logstd = params.chunk(2, -1)
    assert torch.all(logstd == 0) and mean.abs().max() < 0.1


def test_truncation_bootstraps_from_the_final_observation(tmp_path, monkeypatch):
    """End to end on an env whose observation is the step count: at a time limit V(s') must be the
    value of the final observation, not of the reset one; between steps V(s') is the next stored
    V(s)."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    seen = []
    real_gae = ppo_clip.compute_gae
    monkeypatch.setattr(ppo_clip, "compute_gae",
                        lambda *a: seen.append([x.clone() for x in a[:5]]) or real_gae(*a))
    monkeypatch.chdir(tmp_path)
    for env_id, ends_by, length in [("toy/Count-v0", "truncation", 5),
                                    ("toy/CountTerminating-v0", "termination", 3),
                                    ("toy/CountTerminatingAtLimit-v0", "both", 5)]:
        seen.clear()
        ppo_clip.train(Args(env_id=env_id, num_envs=2, num_steps=16, total_timesteps=64,
                            num_minibatches=2, eval_episodes=0, exp_name=ends_by))
        for iteration, (rewards, values, next_values, terminated, dones) in enumerate(seen):
            # the step counts t of this rollout: episodes run on across rollouts
            t = torch.arange(16 * iteration, 16 * (iteration + 1))
            expected_dones = ((t + 1) % length == 0).float()[:, None].expand(16, 2)  # envs in step
            # 0/1 flags: never 2 when both ways end at once
            assert torch.equal(dones.float(), expected_dones)
            expected_terminated = (dones.float() if ends_by != "truncation"
                                   else torch.zeros_like(expected_dones))
            assert torch.equal(terminated.float(), expected_terminated)
            inside = dones[:-1] == 0
            assert torch.equal(next_values[:-1][inside], values[1:][inside])
            final = next_values[dones.bool()]
            assert torch.all(final == final[0])  # every episode ends on the same observation...
            assert torch.all(final != values[1:][dones[:-1].bool()])  # ...not the reset one
            # and GAE restarts at every episode end: the advantages are each episode's on its own
            advantages = real_gae(rewards, values, next_values, terminated, dones, 0.99, 0.95)
            for n in range(2):
                for start in range(0, 16, 1):
                    if start == 0 or dones[start - 1, n]:
                        end = next((u for u in range(start, 16) if dones[u, n]), 15) + 1
                        alone = real_gae(rewards[start:end, n], values[start:end, n],
                                         next_values[start:end, n], terminated[start:end, n],
                                         dones[start:end, n], 0.99, 0.95)
                        torch.testing.assert_close(advantages[start:end, n], alone)
    (truncation_run,) = glob.glob(str(tmp_path / "runs" / "*truncation*"))
    episodes = [m for m in read_metrics(truncation_run) if "charts/episodic_return" in m]
    assert len(episodes) == 2 * (64 // 2 // 5)  # every finished episode is logged, true return
    assert all(m["charts/episodic_length"] == 5 and m["charts/episodic_return"] == 5.0
               for m in episodes)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_first_minibatch_sees_the_rollout_policy_exactly(env_id, tmp_path, monkeypatch):
    """With one epoch of one minibatch, r == 1 on the whole update: approx-KL and clip fraction are
    exactly zero."""
    monkeypatch.chdir(tmp_path)
    ppo_clip.train(Args(env_id=env_id, num_envs=2, num_steps=32, num_minibatches=1, update_epochs=1,
                        total_timesteps=256, eval_episodes=0))
    iterations = [m for m in read_metrics(only_run_dir(tmp_path)) if "losses/approx_kl" in m]
    assert len(iterations) == 4
    assert all(m["losses/approx_kl"] == 0.0 and m["losses/clipfrac"] == 0.0 for m in iterations)
    assert all(m["losses/kl"] > 0 for m in iterations)  # the update itself did move the policy


def test_normalize_advantages_centres_and_scales():
    """Catches: advantages divided by their std but not mean-centred (or centred but not scaled)."""
    advantages = torch.tensor([3.0, 5.0, 10.0, -2.0], dtype=torch.float64)
    expected = (np.array([3.0, 5.0, 10.0, -2.0]) - 4.0) / np.std([3.0, 5.0, 10.0, -2.0], ddof=1)
    np.testing.assert_allclose(normalize_advantages(advantages).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("agent", agents(), ids=["categorical", "gaussian"])
def test_approx_kl_estimates_the_exact_kl(agent):
    """The k3 estimator over actions sampled from pi_old agrees with the analytic KL(pi_old ||
    pi_new) within 4 standard errors, and is told apart from KL(pi_new || pi_old). Catches: a
    flipped sign, log r in place of (r - 1) - log r, the ratio inverted."""
    torch.manual_seed(2)
    n = 200_000
    with torch.no_grad():
        old = agent.policy_params(torch.randn(1, 3)).double()
        # a change of the logits, or of the mean and the log-std
        new = old + torch.tensor([[1.5, -1.0, 0.5, 0.0]], dtype=torch.float64)
        old, new = old.repeat(n, 1), new.repeat(n, 1)
        actions = agent.dist(old).sample()
        logratio = agent.log_prob_entropy(new, actions)[0] - agent.log_prob_entropy(old, actions)[0]
        exact = kl_divergence(agent.dist(old), agent.dist(new))[0].item()
        reverse = kl_divergence(agent.dist(new), agent.dist(old))[0].item()
    standard_error = (logratio.exp() - 1 - logratio).std().item() / n**0.5
    assert abs(approx_kl(logratio).item() - exact) < 4 * standard_error
    assert abs(reverse - exact) > 20 * standard_error


def discounted_returns_numpy(rewards, dones, gamma):
    """R_t = gamma R_{t-1} + r_t per env, restarted after an episode end: plain numpy, for
    reference."""
    out, carry = np.zeros_like(rewards), np.zeros(rewards.shape[1])
    for t in range(len(rewards)):
        carry = gamma * carry + rewards[t]
        out[t] = carry
        carry = np.where(dones[t], 0.0, carry)
    return out


def test_scale_rewards_divides_by_the_std_of_the_discounted_return():
    """Catches: dividing by the variance instead of the std, centring the rewards, not restarting
    the return. return_norm holds the statistics of every R_t."""
    rng = np.random.default_rng(0)
    rewards = rng.normal(3.0, 2.0, size=(400, 2))
    dones = rng.random((400, 2)) < 0.05
    for scale in (1.0, 10.0):  # scaled rewards do not depend on the reward's units
        norm = RunningNorm(()).double()
        scaled, carry = scale_rewards(torch.from_numpy(rewards * scale), torch.from_numpy(dones),
                                      0.9, torch.zeros(2, dtype=torch.float64), norm)
        returns = discounted_returns_numpy(rewards * scale, dones, 0.9)
        np.testing.assert_allclose(scaled.numpy(), rewards * scale / returns.std(), rtol=1e-3)
        np.testing.assert_allclose(norm.mean.item(), returns.mean(), rtol=1e-4)
        np.testing.assert_allclose(norm.var.item(), returns.var(), rtol=1e-4)
        np.testing.assert_allclose(carry.numpy(), np.where(dones[-1], 0.0, returns[-1]))


def test_scaling_returns_reads_done_flags_as_booleans():
    """A step that is both terminated and truncated, passed as done = 2, restarts the return like
    done = 1: R = (1, 1.5, 1, 1.5) both times (as numbers, 1 - 2 = -1 would flip its sign)."""
    rewards = torch.ones(4, 1, dtype=torch.float64)
    returns = np.array([1.0, 1.5, 1.0, 1.5])
    for done in (1.0, 2.0):
        dones = torch.tensor([[0.0], [done], [0.0], [0.0]], dtype=torch.float64)
        norm = RunningNorm(()).double()
        _, carry = scale_rewards(rewards, dones, 0.5, torch.zeros(1, dtype=torch.float64), norm)
        torch.testing.assert_close(carry, torch.tensor([1.5], dtype=torch.float64))
        assert norm.mean.item() == pytest.approx(returns.mean(), abs=1e-4)
        assert norm.var.item() == pytest.approx(returns.var(), abs=1e-4)


def test_evaluation_leaves_the_normalisation_frozen():
    """Evaluating must not move the observation statistics (nor anything else in the agent)."""
    env = gym.make("Pendulum-v1")
    agent = Agent(3, env.action_space, Args(norm_obs=True))
    agent.obs_norm.update(torch.randn(100, 3) * 2 + 1)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    ppo_clip.evaluate(agent, "Pendulum-v1", 1, 0)
    after = agent.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def train_tiny(tmp_path, monkeypatch, name, **overrides) -> list[dict]:
    """Train in-process with a small CartPole budget; returns metrics.jsonl's iteration rows."""
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=4,
                    total_timesteps=512, eval_episodes=0)
    ppo_clip.train(Args(exp_name=name, **{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return [m for m in read_metrics(run_dir) if "charts/SPS" in m]


def test_learning_rate_decays_linearly_to_zero(tmp_path, monkeypatch):
    rows = train_tiny(tmp_path, monkeypatch, "anneal", learning_rate=1e-3)  # 4 iterations
    assert [m["charts/learning_rate"] for m in rows] == pytest.approx([1e-3, 0.75e-3, 0.5e-3,
                                                                       0.25e-3])
    rows = train_tiny(tmp_path, monkeypatch, "constant", learning_rate=1e-3, anneal_lr=False)
    assert [m["charts/learning_rate"] for m in rows] == pytest.approx([1e-3] * 4)


def test_target_kl_stops_after_the_first_epoch_over_it(tmp_path, monkeypatch):
    """The rule: after each epoch, stop if that epoch's mean approximate KL exceeds the target.
    Scripted KLs of 0, 0.015, 0.015, ... per epoch: the rule stops after epoch 2 (2 x 2 minibatch
    steps); a running mean over all epochs so far would stop after epoch 4, a flipped comparison
    after epoch 1."""
    calls = []

    def scripted_kl(logratio):
        calls.append(None)  # 2 minibatches per epoch, 4 epochs
        return torch.tensor(0.0 if (len(calls) - 1) % 8 < 2 else 0.015)

    monkeypatch.setattr(ppo_clip, "approx_kl", scripted_kl)
    rows = train_tiny(tmp_path, monkeypatch, "target", total_timesteps=128, target_kl=0.01)
    assert [m["losses/update_epochs"] for m in rows] == [2] and len(calls) == 2 * 2
    calls.clear()
    rows = train_tiny(tmp_path, monkeypatch, "no_target", total_timesteps=128)
    assert [m["losses/update_epochs"] for m in rows] == [4] and len(calls) == 4 * 2


def sorted_pairs(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """The pairs (a_i, b_i), sorted: the same multiset of pairs whatever the minibatches' order."""
    a, b = a.detach().double().numpy(), b.detach().double().numpy()
    order = np.lexsort((b, a))
    return np.stack([a[order], b[order]])


def test_the_critic_regresses_on_the_returns_around_its_old_values(tmp_path, monkeypatch):
    """value_loss(values, returns, old_values, clip_coef): in every epoch the minibatches'
    (V_old, R) pairs are the rollout's (V(s), A + V(s)) pairs, with A from GAE, and the clip is
    eps. Catches: the old argument order (the critic regressed on V_old, clipped around R)."""
    seen, calls = [], []
    real_gae, real_value_loss = ppo_clip.compute_gae, ppo_clip.value_loss

    def recording_gae(*a):
        advantages = real_gae(*a)
        seen.append((a[1].flatten().clone(), advantages.flatten().clone()))
        return advantages

    def recording_value_loss(values, returns, old_values=None, clip_coef=None):
        calls.append((returns.detach().clone(), old_values.detach().clone(), clip_coef))
        return real_value_loss(values, returns, old_values, clip_coef)

    monkeypatch.setattr(ppo_clip, "compute_gae", recording_gae)
    monkeypatch.setattr(ppo_clip, "value_loss", recording_value_loss)
    train_tiny(tmp_path, monkeypatch, "critic", total_timesteps=128, clip_coef=0.3)
    ((values, advantages),) = seen
    expected = sorted_pairs(values, advantages + values)
    assert len(calls) == 4 * 2 and all(clip_coef == 0.3 for *_, clip_coef in calls)
    for epoch in range(4):
        returns, old_values = (torch.cat(x) for x in zip(*[c[:2] for c in calls[2 * epoch:][:2]]))
        np.testing.assert_allclose(sorted_pairs(old_values, returns), expected, rtol=1e-6)


def test_every_rollout_samples_from_the_current_policy(tmp_path, monkeypatch):
    """The rollout's sampler copies this iteration's std and observation statistics: it must be
    built for every rollout, after the previous update. Catches: one sampler built before the loop
    (tests/test_scripts.py checks this for every script; here it guards ppo_clip's train())."""
    builds, real = [], ppo_clip.make_sampler

    def recording(agent, rng, probe):
        builds.append((agent.actor_logstd.detach().clone(), agent.obs_norm.count.clone()))
        return real(agent, rng, probe)

    monkeypatch.setattr(ppo_clip, "make_sampler", recording)
    rows = train_tiny(tmp_path, monkeypatch, "sampler", env_id="Pendulum-v1", total_timesteps=384)
    assert len(rows) == 3 and len(builds) == 3
    for before, after in zip(builds, builds[1:]):
        assert after[1] > before[1] and not torch.equal(after[0], before[0])


def test_gradient_clipping_limits_the_step(tmp_path, monkeypatch):
    """With a global gradient norm clipped to 1e-9, Adam (eps 1e-5) barely moves: the policy stays
    put."""
    free = train_tiny(tmp_path, monkeypatch, "free", total_timesteps=128)
    clipped = train_tiny(tmp_path, monkeypatch, "clipped", total_timesteps=128, max_grad_norm=1e-9)
    assert free[0]["losses/kl"] > 1e-6
    assert clipped[0]["losses/kl"] < 1e-9


def test_entropy_bonus_raises_the_entropy(tmp_path, monkeypatch):
    """A large entropy coefficient pushes the policy towards uniform; with its sign flipped it
    collapses."""
    rows = train_tiny(tmp_path, monkeypatch, "bonus", ent_coef=10.0, learning_rate=1e-2,
                      anneal_lr=False)
    assert all(m["losses/entropy"] > 0.69 for m in rows)  # log 2 = 0.6931: uniform over 2 actions


def test_two_runs_never_share_a_directory(tmp_path, monkeypatch):
    """Runs started in the same second: runs/NAME, then NAME-2, NAME-3 (never one reused), also end
    to end."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ppo_clip.time, "time", lambda: 1_000_000.0)  # launches in the same second
    handler = signal.getsignal(signal.SIGINT)
    try:  # Run installs its Ctrl-C handler: put the test's back
        runs = [ppo_clip.Run(Args(exp_name="same", seed=1)) for _ in range(3)]
    finally:
        signal.signal(signal.SIGINT, handler)
    for run in runs:
        run.file.close()
    name = os.path.join("runs", "CartPole-v1__same__1__1000000")
    assert [run.dir for run in runs] == [name, f"{name}-2", f"{name}-3"]
    assert all(os.path.isfile(os.path.join(run.dir, "metrics.jsonl")) for run in runs)
    train_tiny(tmp_path, monkeypatch, "twin", total_timesteps=128)
    with pytest.raises(ValueError):  # train_tiny expects exactly one run of that name
        train_tiny(tmp_path, monkeypatch, "twin", total_timesteps=128)
    assert len(glob.glob(str(tmp_path / "runs" / "*__twin__*"))) == 2


# One-line mistakes in ppo_clip.py that this suite must catch (`python tests/mutants.py --only
# ppo_clip`): (name, file, exact text, its replacement[, text, replacement ...]). The plumbing's
# mutants live here only: the plumbing is the same bytes in every script (test_family.py).
MUTANTS = [
    # The algorithm and train()
    ("ppo_clip: clip on the optimistic side", "ppo_clip.py",
     "return torch.max(-advantages * ratio, -advantages * clipped).mean()",
     "return torch.min(-advantages * ratio, -advantages * clipped).mean()"),
    ("ppo_clip: advantages not mean-centred", "ppo_clip.py",
     "return (advantages - advantages.mean()) / (advantages.std() + 1e-8)",
     "return advantages / (advantages.std() + 1e-8)"),
    ("ppo_clip: value_loss called in the old argument order", "ppo_clip.py",
     "value_loss(agent.value(mb_obs), mb_returns, mb_values,",
     "value_loss(agent.value(mb_obs), mb_values, mb_returns,"),
    ("ppo_clip: target-KL comparison flipped", "ppo_clip.py", "[:, 3].mean() > args.target_kl",
     "[:, 3].mean() < args.target_kl"),
    ("ppo_clip: target-KL on the mean of all epochs so far", "ppo_clip.py",
     "torch.stack(epoch_stats)[:, 3]", "torch.stack(stats)[:, 3]"),
    ("ppo_clip: no learning-rate decay", "ppo_clip.py",
     'optimizer.param_groups[0]["lr"] = frac * args.learning_rate', "pass"),
    ("ppo_clip: entropy bonus sign flipped", "ppo_clip.py",
     "loss = pg_loss - args.ent_coef * entropy", "loss = pg_loss + args.ent_coef * entropy"),
    ("ppo_clip: no gradient clipping", "ppo_clip.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
    ("ppo_clip: bootstrap from the reset observation", "ppo_clip.py",
     'next_obs_buf[step, ended] = np.stack(infos["final_obs"][ended])', "pass"),
    ("ppo_clip: done = terminated + truncated in float buffers", "ppo_clip.py",
     "flags = np.zeros(shape, bool), np.zeros(shape, bool)",
     "flags = np.zeros(shape, np.float32), np.zeros(shape, np.float32)",
     "done_buf[step] = terminated_buf[step] | truncated",
     "done_buf[step] = terminated_buf[step] + truncated"),
    ("ppo_clip: one rollout sampler, built before the loop", "ppo_clip.py",
     "            sample = make_sampler(agent, rng, observation)\n", "",
     "    for iteration in range(1, num_iterations + 1):\n",
     "    sample = make_sampler(agent, rng, observation)\n"
     "    for iteration in range(1, num_iterations + 1):\n"),
    ("ppo_clip: SDL's display driver left to SDL (a stray 'error:' line when filming headless)",
     "ppo_clip.py", 'os.environ.setdefault("SDL_VIDEODRIVER", "dummy")', "pass"),
    # The plumbing
    ("ppo_clip: the rollout samples with the log-std as the std", "ppo_clip.py",
     "return mean + std * rng.standard_normal(",
     "return mean + np.log(std) * rng.standard_normal("),
    ("ppo_clip: Gumbel-max with the noise's sign flipped", "ppo_clip.py",
     "return (logits + rng.gumbel(size=logits.shape)).argmax(-1)",
     "return (logits - rng.gumbel(size=logits.shape)).argmax(-1)"),
    ("ppo_clip: the rollout samples from normalised observations left unclipped", "ppo_clip.py",
     "np.clip((x - mu) * s, -m.clip, m.clip)", "(x - mu) * s"),
    ("ppo_clip: evaluation of an env without time limit not capped", "ppo_clip.py",
     "if env.spec.max_episode_steps is None:", "if False:"),
    ("ppo_clip: --capture-video accepts an env that draws no RGB frames", "ppo_clip.py",
     'if mode != "rgb_array" or not', "if False and not"),
    ("ppo_clip: only a missing wandb caught at --track", "ppo_clip.py",
     "except Exception as e:  # not logged in, no network, not installed",
     "except ImportError as e:"),
    ("ppo_clip: training flags given with --eval-checkpoint ignored silently", "ppo_clip.py",
     "    if ignored:  # the env", "    if False:  # the env"),
    ("ppo_clip: an interrupted checkpoint write leaves its .tmp behind", "ppo_clip.py",
     "finally:  # whatever stopped the write", "except Exception:  # whatever stopped the write"),
    ("ppo_clip: a failed checkpoint write raises (RuntimeError not caught)", "ppo_clip.py",
     "except (OSError, RuntimeError) as e:  # disk full", "except OSError as e:  # disk full"),
    ("ppo_clip: non-finite observations reach the statistics", "ppo_clip.py",
     "if not torch.isfinite(obs).all():", "if False:"),
    ("ppo_clip: checkpoint errors keep only their first line", "ppo_clip.py",
     'reason = " ".join(str(e).split())[:100]',
     'reason = (str(e).strip().splitlines() or [""])[0]'),
    ("ppo_clip: an empty Box action space accepted", "ppo_clip.py",
     "len(act.shape) == 1 and act.shape[0] > 0", "len(act.shape) == 1"),
    ("ppo_clip: evaluation passes render_mode=None (envs without the argument crash)",
     "ppo_clip.py",
     'make_env(env_id, **({"render_mode": "rgb_array"} if video_dir else {}))',
     'make_env(env_id, render_mode="rgb_array" if video_dir else None)'),
    ("ppo_clip: Discrete/Tuple observations not flattened (refused)", "ppo_clip.py",
     "env = gym.wrappers.FlattenObservation(env)", "pass"),
    ("ppo_clip: an integer Box action space given a Gaussian", "ppo_clip.py",
     'box and act.dtype.kind == "f"', "box"),
    ("ppo_clip: --capture-video without moviepy fails only after training", "ppo_clip.py",
     "        import moviepy  # noqa: F401\n", "        pass\n"),
    ("ppo_clip: a rollout too big for memory is a traceback", "ppo_clip.py",
     "    except MemoryError:\n", "    except ValueError:\n"),
    ("ppo_clip: rewards divided by the variance", "ppo_clip.py",
     "rewards / torch.sqrt(return_norm.var + return_norm.eps)",
     "rewards / (return_norm.var + return_norm.eps)"),
    ("ppo_clip: reward-scaling return not restarted", "ppo_clip.py",
     "carry = carry * keep[t]", "pass"),
    ("ppo_clip: reward-scaling return restarted one step late", "ppo_clip.py",
     "carry = carry * keep[t]", "carry = carry * keep[t - 1]"),
    ("ppo_clip: reward-scaling return reads done flags as numbers", "ppo_clip.py",
     "keep = rewards.cpu().numpy(), dones.logical_not().cpu().numpy()",
     "keep = rewards.cpu().numpy(), (1 - dones.double()).cpu().numpy()"),
    ("ppo_clip: a Discrete space's start ignored (index i sent as the action)", "ppo_clip.py",
     "return action + space.start", "return action"),
    ("ppo_clip: evaluation updates the observation statistics", "ppo_clip.py",
     "action = agent.dist(agent.policy_params(obs)).mode",
     "agent.obs_norm.update(obs[None]) if agent.continuous else None\n"
     "                action = agent.dist(agent.policy_params(obs)).mode"),
    ("ppo_clip: run directory reused", "ppo_clip.py",
     "os.makedirs(self.dir)\n", "os.makedirs(self.dir, exist_ok=True)\n"),
]
