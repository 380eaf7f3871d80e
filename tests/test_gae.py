"""gae.py against the public fixture and checks 3-4 of IMPLEMENTATION_NOTES.md, in float32 and
float64."""

import numpy as np
import pytest
import torch

from gae import compute_gae, reward_to_go

DTYPES = [torch.float32, torch.float64]
GAMMA, LAMBDA = 0.99, 0.95


def lambda_return_gae(rewards, values, next_values, terminated, dones, gamma, lam):
    """An independent computation from the GAE paper's other form (eqs. 14-16): A_t is the lambda-
    weighted average of the k-step advantages A_t^(k) = sum_{l<k} gamma^l r_{t+l} + gamma^k
    V(s_{t+k}) - V(s_t), with weights (1 - lambda) lambda^(k-1) and the rest of the weight on the
    longest one, which ends where the episode (or the segment) does: at a termination V(s_{t+k}) =
    0, elsewhere it is the stored V(s'). Plain Python floats."""
    r, v, v_next = rewards.tolist(), values.tolist(), next_values.tolist()
    term, done = [bool(x) for x in terminated.tolist()], [bool(x) for x in dones.tolist()]
    T, advantages = len(r), []
    for t in range(T):
        end = next(
            (u for u in range(t, T) if done[u]), T - 1
        )  # last step of t's episode inside the segment
        K = end - t + 1
        k_step = []
        for k in range(1, K + 1):
            last = t + k - 1
            tail = 0.0 if (k == K and term[last]) else v_next[last]
            k_step.append(sum(gamma**l * r[t + l] for l in range(k)) + gamma**k * tail - v[t])
        weights = [(1 - lam) * lam ** (k - 1) for k in range(1, K)] + [lam ** (K - 1)]
        advantages.append(sum(w * a for w, a in zip(weights, k_step)))
    return torch.tensor(advantages, dtype=rewards.dtype)


def random_segment(dtype, T=40, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=dtype)
    values = torch.randn(T, N, generator=g, dtype=dtype)
    next_values = torch.randn(T, N, generator=g, dtype=dtype)
    dones = (torch.rand(T, N, generator=g) < 0.15).to(dtype)
    terminated = dones * (torch.rand(T, N, generator=g) < 0.5).to(
        dtype
    )  # the rest of the dones are truncations
    inside = (
        dones[:-1] == 0
    )  # inside an episode s_{t+1} is the next stored state: V(s_{t+1}) = values[t + 1]
    next_values[:-1][inside] = values[1:][inside]
    return rewards, values, next_values, terminated, dones


@pytest.mark.parametrize("dtype", DTYPES)
def test_public_fixture(dtype):
    rewards = torch.tensor(
        [101, 102, 103, 200, 104, 105, 106, 201, 107, 108, 109, 202], dtype=dtype
    )
    next_values = torch.tensor([2, 3, 4, -1, 5, 6, 7, -2, 8, 9, 10, -3], dtype=dtype)
    values = torch.roll(next_values, 1)
    terminated = torch.zeros(12, dtype=dtype)
    terminated[[3, 7, 11]] = 1
    advantages = compute_gae(rewards, values, next_values, terminated, terminated, GAMMA, LAMBDA)
    expected = torch.tensor(
        [
            454.8344,
            376.1143,
            291.298,
            200.0,
            464.5610,
            383.1085,
            295.387,
            201.0,
            474.2876,
            390.1027,
            299.476,
            202.0,
        ],
        dtype=dtype,
    )
    assert advantages.dtype == dtype and advantages.shape == (12,)
    torch.testing.assert_close(advantages + values, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lambda_zero_is_the_td_error(dtype):
    rewards, values, next_values, terminated, dones = random_segment(dtype)
    advantages = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, 0.0)
    for t, n in np.ndindex(*rewards.shape):  # one transition at a time, in plain floats
        target = rewards[t, n].item() + (
            0.0 if terminated[t, n] else GAMMA * next_values[t, n].item()
        )
        assert advantages[t, n].item() == pytest.approx(
            target - values[t, n].item(), rel=1e-5, abs=1e-5
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_lambda_one_is_the_bootstrapped_return_minus_v(dtype):
    rewards, values, next_values, terminated, dones = random_segment(dtype)
    advantages = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, 1.0)
    # Discounted return to the end of the episode (or segment), bootstrapped with V(s') wherever the
    # episode was cut without terminating: at a truncation, and at the end of the segment.
    bootstrap = GAMMA * next_values * ((dones - terminated) > 0).to(dtype)
    bootstrap[-1] = GAMMA * next_values[-1] * (1 - terminated[-1])
    returns = reward_to_go(rewards + bootstrap, dones, GAMMA)
    torch.testing.assert_close(advantages, returns - values)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_matches_the_lambda_return_form(dtype, lam):
    for column in zip(*(x.unbind(1) for x in random_segment(dtype))):
        expected = lambda_return_gae(*column, GAMMA, lam)
        torch.testing.assert_close(compute_gae(*column, GAMMA, lam), expected, rtol=1e-5, atol=1e-5)


def test_terminated_and_truncated_on_the_same_step():
    """An env whose own end coincides with its time limit reports terminated = truncated = True.
    Passed as float flags summed (done = 2), the step must still just end the episode: no leak, no
    flipped sign."""
    rewards, values, next_values, terminated, dones = random_segment(
        torch.float64, N=1, T=12, seed=3
    )
    terminated[:], dones[:] = 0, 0
    next_values[:-1] = values[1:]
    terminated[5], truncated = 1, torch.zeros_like(dones)
    truncated[5] = 1
    as_bool = compute_gae(
        rewards,
        values,
        next_values,
        terminated.bool(),
        terminated.bool() | truncated.bool(),
        GAMMA,
        LAMBDA,
    )
    as_sum = compute_gae(
        rewards, values, next_values, terminated, terminated + truncated, GAMMA, LAMBDA
    )
    torch.testing.assert_close(as_sum, as_bool)
    torch.testing.assert_close(
        as_sum[:, 0],
        lambda_return_gae(
            *(x[:, 0] for x in (rewards, values, next_values, terminated, terminated + truncated)),
            GAMMA,
            LAMBDA,
        ),
    )
    torch.testing.assert_close(
        reward_to_go(rewards, terminated + truncated, 0.5),
        reward_to_go(rewards, terminated.bool() | truncated.bool(), 0.5),
    )


def test_batched_envs_equal_one_env_at_a_time():
    segment = random_segment(torch.float64, N=5)
    batched = compute_gae(*segment, GAMMA, LAMBDA)
    for n in range(5):
        torch.testing.assert_close(
            batched[:, n], compute_gae(*(x[:, n] for x in segment), GAMMA, LAMBDA)
        )


def test_nothing_leaks_across_episode_boundaries():
    rewards, values, next_values, terminated, dones = random_segment(
        torch.float64, N=1, T=20, seed=1
    )
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
    rewards, values, next_values, terminated, dones = random_segment(
        torch.float64, N=1, T=10, seed=2
    )
    dones[:], terminated[:] = 0, 0
    dones[4] = 1  # truncated at t = 4: not terminated
    base = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    next_values[4] += 1.0  # V(final observation) of the truncated step
    bumped = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    torch.testing.assert_close(bumped[4] - base[4], torch.tensor([GAMMA], dtype=torch.float64))
    torch.testing.assert_close(bumped[5:], base[5:])
    terminated[4] = 1  # the same step, terminated instead: V(s') is ignored
    torch.testing.assert_close(
        compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)[4],
        rewards[4] - values[4],
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_truncation_toy_every_advantage_is_zero(dtype):
    """Reward 1 forever with the exact V = 1 / (1 - gamma): zero advantage everywhere, time limits
    included."""
    T, N = 50, 2
    v = 1.0 / (1.0 - GAMMA)
    dones = torch.zeros(T, N, dtype=dtype)
    dones[[9, 19, 29, 39, 49], 0] = 1  # time limits: truncated, never terminated
    dones[[14, 44], 1] = 1
    rewards, values = torch.ones(T, N, dtype=dtype), torch.full((T, N), v, dtype=dtype)
    for lam in (0.0, 0.95, 1.0):
        advantages = compute_gae(
            rewards, values, values.clone(), torch.zeros_like(dones), dones, GAMMA, lam
        )
        torch.testing.assert_close(
            advantages,
            torch.zeros_like(advantages),
            atol=1e-4 if dtype == torch.float32 else 1e-10,
            rtol=0,
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_reward_to_go(dtype):
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=dtype)
    dones = torch.tensor([0, 1, 0, 0, 0], dtype=dtype)
    expected = torch.tensor([1 + 0.5 * 2, 2, 3 + 0.5 * 4 + 0.25 * 5, 4 + 0.5 * 5, 5], dtype=dtype)
    returns = reward_to_go(rewards, dones, 0.5)
    assert returns.dtype == dtype
    torch.testing.assert_close(returns, expected)
    torch.testing.assert_close(
        reward_to_go(rewards[:, None].repeat(1, 3), dones[:, None].repeat(1, 3), 0.5),
        expected[:, None].repeat(1, 3),
    )


def test_accepts_boolean_flags_and_rejects_mismatched_shapes():
    rewards, values, next_values, terminated, dones = random_segment(torch.float32)
    as_float = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAMBDA)
    as_bool = compute_gae(
        rewards, values, next_values, terminated.bool(), dones.bool(), GAMMA, LAMBDA
    )
    torch.testing.assert_close(as_bool, as_float)
    with pytest.raises(ValueError, match="one shape"):
        compute_gae(rewards, values[:-1], next_values, terminated, dones, GAMMA, LAMBDA)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_its_dtype(dtype):
    """The recursion runs in numpy, which has float16 but no bfloat16: both come back in their own
    dtype, close to the float64 result."""
    segment = random_segment(torch.float64)
    advantages = compute_gae(*(x.to(dtype) for x in segment), GAMMA, LAMBDA)
    assert (
        advantages.dtype == dtype
        and reward_to_go(segment[0].to(dtype), segment[4], GAMMA).dtype == dtype
    )
    torch.testing.assert_close(
        advantages.double(), compute_gae(*segment, GAMMA, LAMBDA), atol=0.1, rtol=0.05
    )


def test_the_targets_carry_no_gradient():
    """Advantages and returns are regression targets: inputs that require a gradient give results
    that do not, for every lambda (0 takes the shortcut without the recursion)."""
    rewards, values, next_values, terminated, dones = random_segment(torch.float32)
    values.requires_grad_(True)
    for lam in (0.0, LAMBDA):
        assert not compute_gae(
            rewards, values, next_values, terminated, dones, GAMMA, lam
        ).requires_grad
    assert not reward_to_go(rewards.requires_grad_(True), dones, GAMMA).requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda():
    segment = random_segment(torch.float32)
    on_gpu = compute_gae(*(x.cuda() for x in segment), GAMMA, LAMBDA)
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), compute_gae(*segment, GAMMA, LAMBDA))


# One-line mistakes in gae.py that this suite must catch (checked by `python tests/mutants.py --only
# gae`): (name, file, exact text, its replacement[, text, replacement ...]).
MUTANTS = [
    (
        "gae: done read as a number",
        "gae.py",
        "gamma * gae_lambda * dones.logical_not().to(dtype))",
        "gamma * gae_lambda * (1 - dones.to(dtype)))",
    ),
    (
        "gae: dones in place of terminated in the TD error",
        "gae.py",
        "bootstrap = terminated.logical_not()",
        "bootstrap = dones.logical_not()",
    ),
    (
        "gae: the TD-error shortcut taken for every lambda below 1",
        "gae.py",
        "if gae_lambda == 0:",
        "if gae_lambda < 1:",
    ),
    ("gae: no lambda", "gae.py", "gamma * gae_lambda * dones", "gamma * dones"),
    (
        "gae: reward-to-go ignores episode ends",
        "gae.py",
        "gamma * dones.logical_not().to(rewards.dtype))",
        "gamma * torch.ones_like(rewards))",
    ),
    (
        "gae: the recursion runs forward in time",
        "gae.py",
        "for t in reversed(range(len(xs))):",
        "for t in range(len(xs)):",
    ),
    ("gae: the carry is not decayed", "gae.py", "y = xs[t] + decays[t] * y", "y = xs[t] + y"),
    ("gae: bfloat16 comes back as float32", "gae.py", ".to(x.device, x.dtype)", ".to(x.device)"),
]
