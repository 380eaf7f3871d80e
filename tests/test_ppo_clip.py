"""The math of ppo_clip.py (check 8 of IMPLEMENTATION_NOTES.md and the pieces it relies on)."""

import glob

import gymnasium as gym
import numpy as np
import pytest
import torch

import ppo_clip
from conftest import only_run_dir, read_metrics
from ppo_clip import Agent, Args, RunningNorm, clipped_surrogate, scaling_returns, value_loss


def agents():
    torch.manual_seed(0)
    return [Agent(3, gym.spaces.Discrete(4), norm_obs=False), Agent(3, gym.spaces.Box(-1, 1, (2,)), norm_obs=True)]


@pytest.mark.parametrize("agent", agents(), ids=["categorical", "gaussian"])
def test_ratio_is_exactly_one_on_the_first_minibatch(agent):
    """pi_old's log-probs come from one batched pass after the rollout; every minibatch of the first epoch
    must see exactly the same numbers again, so r == 1 bit for bit."""
    obs = torch.randn(16, 4, 3) * 5
    if agent.continuous:
        agent.obs_norm.update(obs.flatten(0, 1))
    with torch.no_grad():
        old_params = agent.policy_params(obs)
        actions = agent.sample(old_params)
        old_logprobs, _ = agent.log_prob_entropy(old_params, actions)
    permutation = torch.randperm(64)
    b_obs, b_actions, b_logprobs = (x.flatten(0, 1)[permutation][:16] for x in (obs, actions, old_logprobs))
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


@pytest.mark.parametrize("ratio, advantage", [(1.5, 1.0), (1.2 + 1e-6, 2.0), (0.5, -1.0), (0.8 - 1e-6, -3.0)])
def test_gradient_is_zero_where_the_clip_is_active(ratio, advantage):
    """Outside [1 - eps, 1 + eps] on the side that would improve the objective, the clip removes the gradient."""
    assert surrogate_grad(ratio, advantage) == 0.0


@pytest.mark.parametrize("ratio, advantage", [(0.5, 1.0), (1.5, -1.0), (1.0, 1.0), (1.1, -2.0), (0.9, 0.7)])
def test_gradient_flows_where_the_unclipped_term_is_the_pessimistic_one(ratio, advantage):
    assert surrogate_grad(ratio, advantage) == pytest.approx(-advantage)  # d/dr of -(r A), batch of one


def test_value_clip_inactive_within_eps():
    old = torch.randn(64, dtype=torch.float64)
    new = (old + (torch.rand(64, dtype=torch.float64) * 2 - 1) * 0.2).requires_grad_()  # |V - V_old| <= eps
    returns = torch.randn(64, dtype=torch.float64)
    clipped = value_loss(new, old, returns, 0.2)
    grad_clipped, = torch.autograd.grad(clipped, new)
    plain = value_loss(new, old, returns, None)
    grad_plain, = torch.autograd.grad(plain, new)
    torch.testing.assert_close(clipped, plain)
    torch.testing.assert_close(grad_clipped, grad_plain)
    torch.testing.assert_close(plain, 0.5 * ((new - returns) ** 2).mean())


def test_value_clip_keeps_the_larger_loss_outside_eps():
    old, returns = torch.tensor([0.0, 0.0]), torch.tensor([1.0, -1.0])
    new = torch.tensor([2.0, 0.5])  # first: overshoots past the target; second: moved away from it
    # clipped predictions: 0.2 and 0.2 -> losses (0.8^2, 1.2^2); unclipped (1, 1.5^2): elementwise max
    torch.testing.assert_close(value_loss(new, old, returns, 0.2), 0.5 * torch.tensor([1.0, 2.25]).mean())


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


def test_sample_follows_the_policy():
    """Gumbel-max sampling draws from softmax(logits); Gaussian sampling has the policy's mean and std."""
    agent_d, agent_c = agents()
    torch.manual_seed(1)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]]).repeat(200_000, 1)
    frequencies = torch.bincount(agent_d.sample(logits), minlength=4) / 200_000
    torch.testing.assert_close(frequencies, logits[0].softmax(-1), atol=4e-3, rtol=0)
    params = torch.tensor([[1.0, -2.0, np.log(0.5), np.log(2.0)]], dtype=torch.float32).repeat(200_000, 1)
    draws = agent_c.sample(params)
    torch.testing.assert_close(draws.mean(0), torch.tensor([1.0, -2.0]), atol=2e-2, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.tensor([0.5, 2.0]), atol=2e-2, rtol=0)


def test_running_norm_matches_whole_data_statistics():
    torch.manual_seed(0)
    data = torch.randn(1000, 3, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64) + 5
    norm = RunningNorm(3).double()
    for chunk in data.split(137):
        norm.update(chunk)
    # equal up to the prior pseudo-count of 1e-4 samples (mean 0, var 1) the statistics start from
    torch.testing.assert_close(norm.mean, data.mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(norm.var, data.var(0, unbiased=False), rtol=0, atol=1e-5)
    assert norm(torch.full((1, 3), 1e9, dtype=torch.float64)).max() == norm.clip


def test_scaling_returns_reset_after_each_episode_end():
    rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0], [0.0]])
    returns, carry = scaling_returns(rewards, dones, 0.5, torch.tensor([2.0]))
    torch.testing.assert_close(returns[:, 0], torch.tensor([2.0, 2.0, 1.0, 1.5]))
    torch.testing.assert_close(carry, torch.tensor([1.5]))


def test_gaussian_starts_with_unit_std_and_small_mean():
    _, agent = agents()
    params = agent.policy_params(torch.randn(10, 3))
    mean, logstd = params.chunk(2, -1)
    assert torch.all(logstd == 0) and mean.abs().max() < 0.1


def test_truncation_bootstraps_from_the_final_observation(tmp_path, monkeypatch):
    """End to end on an env whose observation is the step count: at a time limit V(s') must be the value of the
    final observation, not of the reset one; between steps V(s') is the next stored V(s)."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    seen = []
    real_gae = ppo_clip.compute_gae
    monkeypatch.setattr(ppo_clip, "compute_gae", lambda *a: seen.append([x.clone() for x in a[:5]]) or real_gae(*a))
    monkeypatch.chdir(tmp_path)
    for env_id, ends_by in [("toy/Count-v0", "truncation"), ("toy/CountTerminating-v0", "termination")]:
        seen.clear()
        ppo_clip.train(Args(env_id=env_id, num_envs=2, num_steps=16, total_timesteps=64, num_minibatches=2,
                            eval_episodes=0, exp_name=ends_by))
        length = 5 if ends_by == "truncation" else 3
        for iteration, (rewards, values, next_values, terminated, dones) in enumerate(seen):
            t = torch.arange(16 * iteration, 16 * (iteration + 1))  # episodes run on across iterations
            expected_dones = ((t + 1) % length == 0).float()[:, None].expand(16, 2)  # both envs in step
            assert torch.equal(dones, expected_dones)
            assert torch.equal(terminated, dones if ends_by == "termination" else torch.zeros_like(dones))
            inside = dones[:-1] == 0
            assert torch.equal(next_values[:-1][inside], values[1:][inside])
            final = next_values[dones == 1]
            assert torch.all(final == final[0])  # every episode ends on the same observation...
            assert torch.all(final != values[1:][dones[:-1] == 1])  # ...which is not the reset observation
    (truncation_run,) = glob.glob(str(tmp_path / "runs" / "*truncation*"))
    episodes = [m for m in read_metrics(truncation_run) if "charts/episodic_return" in m]
    assert len(episodes) == 2 * (64 // 2 // 5)  # every finished episode reaches the log, with its true return
    assert all(m["charts/episodic_length"] == 5 and m["charts/episodic_return"] == 5.0 for m in episodes)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_first_minibatch_sees_the_rollout_policy_exactly(env_id, tmp_path, monkeypatch):
    """With one epoch of one minibatch, r == 1 on the whole update: approx-KL and clip fraction are exactly zero."""
    monkeypatch.chdir(tmp_path)
    ppo_clip.train(Args(env_id=env_id, num_envs=2, num_steps=32, num_minibatches=1, update_epochs=1,
                        total_timesteps=256, eval_episodes=0))
    iterations = [m for m in read_metrics(only_run_dir(tmp_path)) if "losses/approx_kl" in m]
    assert len(iterations) == 4
    assert all(m["losses/approx_kl"] == 0.0 and m["losses/clipfrac"] == 0.0 for m in iterations)
    assert all(m["losses/kl"] > 0 for m in iterations)  # the update itself did move the policy
