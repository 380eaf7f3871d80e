"""The math of vpg_baseline.py (checks 1 and 2 of IMPLEMENTATION_NOTES.md with a baseline, GAE's bias) and what
its value function is fitted to."""

import glob

import pytest
import torch

import vpg_baseline
from conftest import read_metrics
from exact_gradients import (DTYPE, bandit, per_episode_gradients, random_mdp, sample_episodes, total_variance,
                             z_scores)
from vpg_baseline import Args, advantages_and_returns, policy_gradient_loss, value_loss

SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, the keys of every iteration, bad input of its own flags
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--vf-iters", "5", "--total-timesteps", "128",
             "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss", "losses/entropy",
             "losses/kl", "losses/explained_variance"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"], "less than one batch"),
        "zero value iterations": (["--vf-iters", "0"], "--vf-iters must be positive"),
        "zero value learning rate": (["--vf-learning-rate", "0"], "--vf-learning-rate must be positive"),
        "diverging critic": (["--vf-learning-rate", "1e30"], "error: the value loss became"),
        "negative lambda": (["--gae-lambda", "-0.1"], "--gae-lambda must be in [0, 1]"),
        "batch of one": (["--num-envs", "1", "--num-steps", "1", "--total-timesteps", "8"],
                         "a batch of 1 sample: advantage normalisation needs at least 2"),
    },
}
Z = 4.5  # |z| bound for a correct estimator (several components: a little above the usual 4)


def test_advantages_and_returns_by_hand():
    """One column, gamma 0.5: a terminated episode [1, 2], then [3, 4] cut by a time limit whose final observation
    has V = 10. G = [2, 2, 7.5, 9]: no bootstrap at the termination, 0.5 * 10 at the time limit. A = G - V with
    lambda = 1, the TD error r + gamma V(s') - V(s) with lambda = 0.
    Catches: the advantage's sign flipped, truncation treated as termination, a return leaking across episodes."""
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DTYPE)
    values = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=DTYPE)
    next_values = torch.tensor([-1.0, 99.0, 3.0, 10.0], dtype=DTYPE)  # 99: V of a terminal state, never used
    terminated = torch.tensor([False, True, False, False])
    dones = torch.tensor([False, True, False, True])
    returns = torch.tensor([2.0, 2.0, 7.5, 9.0], dtype=DTYPE)
    advantages, got_returns = advantages_and_returns(rewards, values, next_values, terminated, dones, 0.5, 1.0)
    torch.testing.assert_close(got_returns, returns)
    torch.testing.assert_close(advantages, returns - values)
    td_errors = torch.tensor([1.0 - 0.5 - 0.5, 2.0 + 1.0, 3.0 + 1.5 - 2.0, 4.0 + 5.0 - 3.0], dtype=DTYPE)
    advantages, got_returns = advantages_and_returns(rewards, values, next_values, terminated, dones, 0.5, 0.0)
    torch.testing.assert_close(advantages, td_errors)
    torch.testing.assert_close(got_returns, returns)  # the value target does not depend on lambda


def test_value_loss_is_half_the_mean_squared_error():
    assert value_loss(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_bandit_baselines_keep_the_mean_and_lower_the_variance():
    """Check 1 through the script's advantage and loss: exact grad J = pi * (r - J). A constant baseline b = J and a
    baseline computed from the policy itself (V = sum_a pi(a) r_a, which depends on theta) both leave the mean
    unchanged and lower the variance, because the loss treats A as a constant.
    Catches: the advantage's sign flipped (G - V becomes V - G), the gradient flowing through the baseline into the
    policy loss (the detach removed)."""
    mdp = bandit([10.0, 11.0, 8.0, 12.0], reward_noise=1.0)
    theta = torch.tensor([[0.3, -0.2, 0.5, 0.0]], dtype=DTYPE)
    pi = theta.softmax(-1)
    J = (pi * mdp.r).sum()
    exact = pi * (mdp.r - J)
    batch = sample_episodes(mdp, theta, columns=40_000, episodes_per_column=1, seed=1)
    terminated = batch.dones

    def advantages_with(values):  # one-step episodes: V(s') is never used
        return advantages_and_returns(batch.rewards, values, torch.zeros_like(batch.rewards), terminated,
                                      batch.dones, mdp.gamma, 1.0)[0]

    plain = per_episode_gradients(theta, batch, policy_gradient_loss,
                                  lambda copies: advantages_with(torch.zeros_like(batch.rewards)))
    constant = per_episode_gradients(theta, batch, policy_gradient_loss,
                                     lambda copies: advantages_with(torch.full_like(batch.rewards, J.item())))
    from_policy = per_episode_gradients(  # V(s) = sum_a pi_theta(a) r_a, with the graph back to each episode's theta
        theta, batch, policy_gradient_loss,
        lambda copies: advantages_with((copies[batch.episode, 0].softmax(-1) * mdp.r[0]).sum(-1)))
    for estimates in (plain, constant, from_policy):
        assert z_scores(estimates, exact).abs().max() < Z
    assert total_variance(constant) < 0.1 * total_variance(plain)
    assert total_variance(from_policy) < 0.1 * total_variance(plain)
    assert z_scores(constant, -exact).abs().max() > 3 * Z  # enough samples to see a sign error


@pytest.fixture(scope="module")
def mdp_episodes():
    mdp = random_mdp(seed=0)
    theta = torch.randn(3, 2, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    batch = sample_episodes(mdp, theta, columns=20_000, episodes_per_column=2, seed=3)
    return mdp, theta, batch


def mdp_estimates(mdp, theta, batch, V: torch.Tensor, gae_lambda: float) -> torch.Tensor:
    """The script's estimator with a given table V as the critic (V(terminal) = 0)."""
    V_ext = torch.cat([V, torch.zeros(1, dtype=DTYPE)])
    terminated = batch.next_states == mdp.num_states
    advantages, _ = advantages_and_returns(batch.rewards, V_ext[batch.states], V_ext[batch.next_states], terminated,
                                           batch.dones, mdp.gamma, gae_lambda)
    return per_episode_gradients(theta, batch, policy_gradient_loss, lambda copies: advantages)


def test_baseline_keeps_the_reinforce_gradient_and_lowers_its_variance(mdp_episodes):
    """Check 2 with a baseline: on the tabular MDP (two whole episodes per column), A = G - V with the exact V
    estimates the same gamma^t-dropped gradient as REINFORCE with reward-to-go (V = 0), with less variance."""
    mdp, theta, batch = mdp_episodes
    dropped = mdp.pgt_gradient(theta, drop_discount=True)
    V_exact, _, _ = mdp.solve(theta, mdp.gamma)
    no_baseline = mdp_estimates(mdp, theta, batch, torch.zeros(3, dtype=DTYPE), 1.0)
    baseline = mdp_estimates(mdp, theta, batch, V_exact, 1.0)
    assert z_scores(no_baseline, dropped).abs().max() < Z
    assert z_scores(baseline, dropped).abs().max() < Z
    assert total_variance(baseline) < 0.5 * total_variance(no_baseline)


def test_gae_lambda_trades_bias_for_variance(mdp_episodes):
    """With the exact V every lambda is unbiased (E[delta_t | s_t, a_t] = A(s_t, a_t)) and a smaller lambda has less
    variance; with a poor V (zero) lambda = 1 is still unbiased, lambda = 0 is not."""
    mdp, theta, batch = mdp_episodes
    dropped = mdp.pgt_gradient(theta, drop_discount=True)
    V_exact, _, _ = mdp.solve(theta, mdp.gamma)
    exact_v = {lam: mdp_estimates(mdp, theta, batch, V_exact, lam) for lam in (1.0, 0.5, 0.0)}
    for estimates in exact_v.values():
        assert z_scores(estimates, dropped).abs().max() < Z
    assert total_variance(exact_v[0.0]) < total_variance(exact_v[0.5]) < total_variance(exact_v[1.0])
    zero = torch.zeros(3, dtype=DTYPE)
    assert z_scores(mdp_estimates(mdp, theta, batch, zero, 1.0), dropped).abs().max() < Z
    assert z_scores(mdp_estimates(mdp, theta, batch, zero, 0.0), dropped).abs().max() > 2 * Z


def train_toy(tmp_path, monkeypatch, env_id: str, **overrides):
    """Train in-process on a toy env whose observation is the step count, reward 1 per step, recording the inputs of
    every advantages_and_returns call and every value_loss call; returns them and the rows of metrics.jsonl."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    estimated, fitted = [], []
    real_estimate, real_loss = vpg_baseline.advantages_and_returns, vpg_baseline.value_loss
    monkeypatch.setattr(vpg_baseline, "advantages_and_returns",
                        lambda *a: estimated.append([x.clone() for x in a[:5]]) or real_estimate(*a))
    monkeypatch.setattr(vpg_baseline, "value_loss",
                        lambda v, g: fitted.append((v.detach().clone(), g.clone())) or real_loss(v, g))
    monkeypatch.chdir(tmp_path)
    settings = dict(env_id=env_id, num_envs=2, num_steps=2, total_timesteps=24, gamma=0.9, vf_iters=3,
                    eval_episodes=0, exp_name="toy")
    vpg_baseline.train(Args(**{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*__toy__*"))
    return estimated, fitted, read_metrics(run_dir)


def test_value_target_is_the_return_without_bootstrap_at_termination(tmp_path, monkeypatch):
    """toy/CountTerminating-v0 ends by termination after 3 steps: every batch (2 envs, each finishing the episode it
    is in after 2 steps) holds whole episodes, and V is fitted to G = 1 + 0.9 + 0.81, 1 + 0.9, 1 at every step of
    the fit, from V as it was before the fit (the first prediction is the V the advantages used).
    Catches: V fitted to the advantages, partial episodes, advantages from V after the fit."""
    estimated, fitted, _ = train_toy(tmp_path, monkeypatch, "toy/CountTerminating-v0", total_timesteps=24)
    assert len(estimated) == 4 and len(fitted) == 4 * 3
    expected = torch.tensor([2.71, 1.9, 1.0] * 2)
    for iteration, (rewards, values, next_values, terminated, dones) in enumerate(estimated):
        for predicted, target in fitted[3 * iteration: 3 * iteration + 3]:
            torch.testing.assert_close(target.sort().values, expected.sort().values)
        first_prediction, _ = fitted[3 * iteration]
        torch.testing.assert_close(first_prediction, values[rewards != 0])  # padding is the only reward 0 here


def test_truncation_bootstraps_from_the_final_observation(tmp_path, monkeypatch):
    """toy/Count-v0 is cut by a time limit after 5 steps (observation = step count): V(s') of the last step is V of
    the final observation (5), not of the next episode's first (0), and the value target is
    G_t = sum_k 0.9^k + 0.9^(5 - t) V(final obs). Inside an episode V(s') is the next step's V(s).
    Catches: truncation treated as termination, V(s') from the reset observation."""
    estimated, fitted, _ = train_toy(tmp_path, monkeypatch, "toy/Count-v0", num_steps=7, total_timesteps=40)
    for iteration, (rewards, values, next_values, terminated, dones) in enumerate(estimated):
        assert not terminated.any() and dones.sum() == 4  # two 5-step episodes per env, no padding
        inside = ~dones[:-1]
        assert torch.equal(next_values[:-1][inside], values[1:][inside])
        final = next_values[dones]
        assert torch.all(final == final[0]) and torch.all(final != values[0, 0])  # V(5), not V(0)
        steps_left = 5 - torch.arange(5, dtype=torch.float32)
        episode = (1 - 0.9**steps_left) / (1 - 0.9) + 0.9**steps_left * final[0]
        _, target = fitted[3 * iteration]
        torch.testing.assert_close(target.sort().values, episode.repeat(4).sort().values)


def test_the_value_function_learns_the_returns(tmp_path, monkeypatch):
    """Several batches of 80 Adam steps on toy/CountTerminating-v0 fit V to the three returns: the explained
    variance of V before the last fit is close to 1. Catches: fewer fit steps than asked, the fit on another target."""
    _, _, metrics = train_toy(tmp_path, monkeypatch, "toy/CountTerminating-v0", vf_iters=80, vf_learning_rate=1e-2,
                              total_timesteps=120)
    explained = [m["losses/explained_variance"] for m in metrics if "charts/SPS" in m]
    assert explained[-1] > 0.95 and explained[0] < 0.5


# One-line mistakes that this suite must catch (checked by `python tests/mutants.py --only vpg_baseline`):
# (name, file, exact text, its replacement[, text, replacement ...]).
MUTANTS = [
    ("vpg_baseline: critic's non-finite loss not checked", "vpg_baseline.py", "if not torch.isfinite(v_loss):",
     "if False:"),
    ("vpg_baseline: batch of one sample accepted with --norm-adv", "vpg_baseline.py",
     "if not problems and args.norm_adv and batch_size < 2:", "if False:"),
    ("vpg_baseline: advantage with the wrong sign", "vpg_baseline.py", "return returns - values, returns",
     "return values - returns, returns"),
    ("vpg_baseline: gradient flows through the baseline (detach removed)", "vpg_baseline.py",
     "return -(logprobs * weights.detach()).mean()", "return -(logprobs * weights).mean()"),
    ("vpg_baseline: policy loss sign flipped", "vpg_baseline.py", "return -(logprobs * weights.detach()).mean()",
     "return (logprobs * weights.detach()).mean()"),
    ("vpg_baseline: value fit on the advantages", "vpg_baseline.py",
     "v_loss = value_loss(agent.value(b_obs), b_returns)", "v_loss = value_loss(agent.value(b_obs), b_advantages)"),
    ("vpg_baseline: value fit on the rewards", "vpg_baseline.py", "v_loss = value_loss(agent.value(b_obs), b_returns)",
     "v_loss = value_loss(agent.value(b_obs), rewards[valid])"),
    ("vpg_baseline: one value step whatever --vf-iters", "vpg_baseline.py", "for _ in range(args.vf_iters):",
     "for _ in range(1):"),
    ("vpg_baseline: truncation treated as termination", "vpg_baseline.py",
     "returns = compute_gae(rewards, values, next_values, terminated, dones, gamma, 1.0) + values",
     "returns = compute_gae(rewards, values, next_values, dones, dones, gamma, 1.0) + values"),
    ("vpg_baseline: V(s') from the next episode's first observation", "vpg_baseline.py",
     "next_obs_row[i] = observation[i]  # s_{t+1}", "pass  # s_{t+1}"),
    ("vpg_baseline: partial episodes trained on as if whole", "vpg_baseline.py", "while in_flight.any():",
     "while in_flight.any() and step < args.num_steps:"),
    ("vpg_baseline: no gradient clipping", "vpg_baseline.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
    ("vpg_baseline: clipping given the advantage weights (a shadowed name)", "vpg_baseline.py",
     "clip_grad_norm_(parameters,", "clip_grad_norm_(weights,"),
]
