"""gae.py against the public fixture and checks 3-4 of IMPLEMENTATION_NOTES.md, in float32 and float64."""

import pytest
import torch

from gae import compute_gae, reward_to_go

DTYPES = [torch.float32, torch.float64]
GAMMA, LAMBDA = 0.99, 0.95


def brute_force_gae(rewards, values, next_values, terminated, dones, gamma, lam):
    """A_t = sum_l (gamma lambda)^l delta_{t+l}, summed only up to the end of t's episode."""
    deltas = rewards + gamma * (1 - terminated) * next_values - values
    advantages = torch.zeros_like(rewards)
    for t in range(len(rewards)):
        for l in range(len(rewards) - t):
            advantages[t] += (gamma * lam) ** l * deltas[t + l]
            if dones[t + l]:
                break
    return advantages


def random_segment(dtype, T=40, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=dtype)
    values = torch.randn(T, N, generator=g, dtype=dtype)
    next_values = torch.randn(T, N, generator=g, dtype=dtype)
    dones = (torch.rand(T, N, generator=g) < 0.15).to(dtype)
    terminated = dones * (torch.rand(T, N, generator=g) < 0.5).to(dtype)  # the rest of the dones are truncations
    return rewards, values, next_values, terminated, dones


@pytest.mark.parametrize("dtype", DTYPES)
def test_public_fixture(dtype):
    rewards = torch.tensor([101, 102, 103, 200, 104, 105, 106, 201, 107, 108, 109, 202], dtype=dtype)
    next_values = torch.tensor([2, 3, 4, -1, 5, 6, 7, -2, 8, 9, 10, -3], dtype=dtype)
    values = torch.roll(next_values, 1)
    terminated = torch.zeros(12, dtype=dtype)
    terminated[[3, 7, 11]] = 1
    advantages = compute_gae(rewards, values, next_values, terminated, terminated, GAMMA, LAMBDA)
    expected = torch.tensor([454.8344, 376.1143, 291.298, 200.0, 464.5610, 383.1085, 295.387, 201.0,
                             474.2876, 390.1027, 299.476, 202.0], dtype=dtype)
    assert advantages.dtype == dtype and advantages.shape == (12,)
    torch.testing.assert_close(advantages + values, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lambda_zero_is_the_td_error(dtype):
    rewards, values, next_values, terminated, dones = random_segment(dtype)
    advantages = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, 0.0)
    torch.testing.assert_close(advantages, rewards + GAMMA * (1 - terminated) * next_values - values)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lambda_one_is_the_bootstrapped_return_minus_v(dtype):
    rewards, values, next_values, terminated, dones = random_segment(dtype)
    # Inside an episode s_{t+1} is the next stored state, so V(s_{t+1}) = values[t + 1] there (telescoping).
    inside = dones[:-1] == 0
    next_values[:-1][inside] = values[1:][inside]
    advantages = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, 1.0)
    # Discounted return to the end of the episode (or segment), bootstrapped with V(s') wherever the episode
    # was cut without terminating: at a truncation, and at the end of the segment.
    bootstrap = GAMMA * next_values * ((dones - terminated) > 0).to(dtype)
    bootstrap[-1] = GAMMA * next_values[-1] * (1 - terminated[-1])
    returns = reward_to_go(rewards + bootstrap, dones, GAMMA)
    torch.testing.assert_close(advantages, returns - values)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_matches_brute_force_sum(dtype, lam):
    for column in zip(*(x.unbind(1) for x in random_segment(dtype))):
        expected = brute_force_gae(*column, GAMMA, lam)
        torch.testing.assert_close(compute_gae(*column, GAMMA, lam), expected)


def test_batched_envs_equal_one_env_at_a_time():
    segment = random_segment(torch.float64, N=5)
    batched = compute_gae(*segment, GAMMA, LAMBDA)
    for n in range(5):
        torch.testing.assert_close(batched[:, n], compute_gae(*(x[:, n] for x in segment), GAMMA, LAMBDA))


def test_nothing_leaks_across_episode_boundaries():
    rewards, values, next_values, terminated, dones = random_segment(torch.float64, N=1, T=20, seed=1)
    dones[:], terminated[:] = 0, 0
    dones[9], terminated[9] = 1, 1
    before = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    rewards[10:] += 100.0  # a later episode changes completely
    values[10:] -= 7.0
    next_values[9:] += 50.0  # including V(s') of the terminal step, which must not be used
    after = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    torch.testing.assert_close(after[:10], before[:10])
    assert not torch.allclose(after[10:], before[10:])


def test_truncation_bootstraps_from_the_final_observation():
    rewards, values, next_values, terminated, dones = random_segment(torch.float64, N=1, T=10, seed=2)
    dones[:], terminated[:] = 0, 0
    dones[4] = 1  # truncated at t = 4: not terminated
    base = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    next_values[4] += 1.0  # V(final observation) of the truncated step
    bumped = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    torch.testing.assert_close(bumped[4] - base[4], torch.tensor([GAMMA], dtype=torch.float64))
    torch.testing.assert_close(bumped[5:], base[5:])
    terminated[4] = 1  # the same step, terminated instead: V(s') is ignored
    torch.testing.assert_close(compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)[4],
                               rewards[4] - values[4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_truncation_toy_every_advantage_is_zero(dtype):
    """Reward 1 forever with the exact V = 1 / (1 - gamma): zero advantage everywhere, time limits included."""
    T, N = 50, 2
    v = 1.0 / (1.0 - GAMMA)
    dones = torch.zeros(T, N, dtype=dtype)
    dones[[9, 19, 29, 39, 49], 0] = 1  # time limits: truncated, never terminated
    dones[[14, 44], 1] = 1
    rewards, values = torch.ones(T, N, dtype=dtype), torch.full((T, N), v, dtype=dtype)
    for lam in (0.0, 0.95, 1.0):
        advantages = compute_gae(rewards, values, values.clone(), torch.zeros_like(dones), dones, GAMMA, lam)
        torch.testing.assert_close(advantages, torch.zeros_like(advantages), atol=1e-4 if dtype == torch.float32 else 1e-10, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reward_to_go(dtype):
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=dtype)
    dones = torch.tensor([0, 1, 0, 0, 0], dtype=dtype)
    expected = torch.tensor([1 + 0.5 * 2, 2, 3 + 0.5 * 4 + 0.25 * 5, 4 + 0.5 * 5, 5], dtype=dtype)
    returns = reward_to_go(rewards, dones, 0.5)
    assert returns.dtype == dtype
    torch.testing.assert_close(returns, expected)
    torch.testing.assert_close(reward_to_go(rewards[:, None].repeat(1, 3), dones[:, None].repeat(1, 3), 0.5),
                               expected[:, None].repeat(1, 3))


def test_accepts_boolean_flags_and_rejects_mismatched_shapes():
    rewards, values, next_values, terminated, dones = random_segment(torch.float32)
    as_float = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    as_bool = compute_gae(rewards, values, next_values, terminated.bool(), dones.bool(), GAMMA, LAMBDA)
    torch.testing.assert_close(as_bool, as_float)
    with pytest.raises(ValueError, match="one shape"):
        compute_gae(rewards, values[:-1], next_values, terminated, dones, GAMMA, LAMBDA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda():
    segment = random_segment(torch.float32)
    on_gpu = compute_gae(*(x.cuda() for x in segment), GAMMA, LAMBDA)
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), compute_gae(*segment, GAMMA, LAMBDA))
