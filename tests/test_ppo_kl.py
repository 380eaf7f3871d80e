"""The math of ppo_kl.py (check 9 of IMPLEMENTATION_NOTES.md): the beta rule, the exact KL, the penalised
surrogate, and the loop that ties them together (beta once per iteration, the beta used is the beta logged)."""

import glob
import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

import ppo_kl
from conftest import read_metrics
from ppo_kl import Agent, Args, analytic_kl, kl_penalty_surrogate, update_kl_coef


SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, the keys of every iteration, bad input of its own flags
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "2",
             "--total-timesteps", "128", "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss", "losses/entropy",
             "losses/approx_kl", "losses/explained_variance", "losses/kl", "losses/kl_coef"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"], "less than one batch"),
        "minibatches do not divide": (["--num-minibatches", "3"], "does not divide"),
        "zero epochs": (["--update-epochs", "0"], "--update-epochs must be positive"),
        "rollout too big for memory": (["--num-steps", str(10**16), "--total-timesteps", str(10**17)],
                                       "does not fit in memory"),
        "zero kl target": (["--kl-target", "0"], "--kl-target must be positive"),
        "nan kl target": (["--kl-target", "nan"], "--kl-target must be positive"),
        "negative kl coef": (["--kl-coef", "-1"], "--kl-coef must be positive"),
        "infinite kl coef": (["--kl-coef", "inf"], "--kl-coef must be positive"),
        "zero value clip": (["--vf-clip-coef", "0"], "--vf-clip-coef must be positive"),
    },
}

TARGET = 3 / 256  # 1.5 d_targ = 9/512 and d_targ / 1.5 = 1/128 are exact in binary: the boundaries are sharp


@pytest.mark.parametrize("kl, expected", [
    (1.0, 2 * 0.8),                                  # far above: doubles
    (math.nextafter(9 / 512, 1), 2 * 0.8),           # just above 1.5 d_targ: doubles
    (9 / 512, 0.8),                                  # exactly 1.5 d_targ: stays
    (TARGET, 0.8),                                   # on target: stays
    (1 / 128, 0.8),                                  # exactly d_targ / 1.5: stays
    (math.nextafter(1 / 128, 0), 0.8 / 2),           # just below d_targ / 1.5: halves
    (0.0, 0.8 / 2),                                  # no change of the policy at all: halves
])
def test_update_kl_coef_every_branch_and_boundary(kl, expected):
    """PPO section 4. Catches: thresholds swapped (1.5 d_targ <-> d_targ / 1.5), beta multiplied instead of divided
    when the KL is small (or the factors swapped), >= or <= in place of the paper's strict comparisons."""
    assert update_kl_coef(0.8, kl, TARGET) == expected


def test_update_kl_coef_default_target():
    assert [update_kl_coef(1.0, d, 0.01) for d in (0.02, 0.0151, 0.012, 0.0067, 0.0066, 0.001)] == [2, 2, 1, 1, 0.5, 0.5]


def test_update_kl_coef_never_reaches_zero():
    """Catches: an unbounded rule, where a long run with the KL far below target halves beta to exactly 0.0 (after
    about 1075 halvings), from which it can never double back."""
    beta = 1.0
    for _ in range(2000):
        beta = update_kl_coef(beta, 0.0, 0.01)
    assert beta == 1e-8 and update_kl_coef(beta, 1.0, 0.01) == 2e-8
    assert update_kl_coef(1e8, 1.0, 0.01) == 1e8


def torch_dist(params: torch.Tensor, continuous: bool):
    """The policy distribution from torch.distributions, built independently of ppo_kl's code."""
    if not continuous:
        return Categorical(logits=params)
    mean, logstd = params.chunk(2, -1)
    return Independent(Normal(mean, logstd.exp()), 1)


def old_and_new_params(continuous: bool, n: int):
    """A pi_old and a pi_theta that differ in every parameter (logits; or mean and log-std), float64."""
    if not continuous:
        old = torch.tensor([[0.3, -1.0, -2.0, 0.0]], dtype=torch.float64)
        new = torch.tensor([[0.3, -0.5, 1.5, 0.0]], dtype=torch.float64)
    else:  # pi_theta narrower than pi_old: the two directions of the KL differ a lot
        old = torch.tensor([[0.2, -1.0, 0.0, math.log(0.5)]], dtype=torch.float64)
        new = torch.tensor([[0.9, -0.5, math.log(0.4), math.log(0.25)]], dtype=torch.float64)
    return old.repeat(n, 1), new.repeat(n, 1)


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_analytic_kl_matches_its_sampled_estimate(continuous):
    """E_{a ~ pi_old}[log pi_old(a) - log pi_theta(a)] from 200k samples agrees with analytic_kl within 4 standard
    errors, and the reverse KL(pi_theta || pi_old) is many standard errors away. Catches: KL(new || old) in place of
    KL(old || new); a wrong Gaussian term (variance for std, a missing mean term, a missing 1/2)."""
    torch.manual_seed(0)
    n = 200_000
    old, new = old_and_new_params(continuous, n)
    p, q = torch_dist(old, continuous), torch_dist(new, continuous)
    actions = p.sample()
    log_ratio = p.log_prob(actions) - q.log_prob(actions)
    estimate, standard_error = log_ratio.mean().item(), log_ratio.std().item() / n**0.5
    exact = analytic_kl(old[:1], new[:1], continuous).item()
    reverse = torch.distributions.kl_divergence(q, p)[0].item()
    assert abs(exact - estimate) < 4 * standard_error
    assert abs(reverse - estimate) > 20 * standard_error


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_analytic_kl_equals_torch_kl_divergence(continuous):
    """Many random pairs, to float64 precision, against torch.distributions.kl_divergence (an independent formula).
    Catches: the Gaussian KL not summed over action dimensions, or summed over the batch."""
    torch.manual_seed(3)
    old, new = torch.randn(64, 6, dtype=torch.float64), torch.randn(64, 6, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(torch_dist(old, continuous), torch_dist(new, continuous))
    torch.testing.assert_close(analytic_kl(old, new, continuous), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_kl_is_zero_with_zero_gradient_at_theta_old(continuous):
    """KL(pi_old || pi_theta) has its minimum, 0, at theta = theta_old: value and gradient vanish there, and it is
    positive around it. Catches: any term of the Gaussian KL off by a factor (the gradient is then not zero)."""
    torch.manual_seed(1)
    old = torch.randn(8, 4, dtype=torch.float64)
    new = old.clone().requires_grad_()
    kl = analytic_kl(old, new, continuous)
    (gradient,) = torch.autograd.grad(kl.sum(), new)
    torch.testing.assert_close(kl, torch.zeros(8, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(gradient, torch.zeros_like(gradient), rtol=0, atol=1e-12)
    assert torch.all(analytic_kl(old, old + 0.1 * torch.randn_like(old), continuous) > 0)


def test_kl_penalty_surrogate_values_and_gradient():
    """-(mean(r A) - beta KL) by hand; d loss / d KL = +beta. Catches: the penalty's sign flipped (a reward for
    moving away from pi_old), beta applied to the surrogate instead of the KL, a sum in place of the mean."""
    ratio = torch.tensor([1.2, 0.5], dtype=torch.float64, requires_grad=True)
    advantages = torch.tensor([1.0, -2.0], dtype=torch.float64)
    kl = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    loss = kl_penalty_surrogate(ratio, advantages, kl, 2.0)
    assert loss.item() == pytest.approx(-(1.2 - 1.0) / 2 + 2.0 * 0.3)
    loss.backward()
    assert kl.grad.item() == pytest.approx(2.0)
    torch.testing.assert_close(ratio.grad, -advantages / 2)


def train_tiny(tmp_path, monkeypatch, name, **overrides) -> list[dict]:
    """Train in-process with a small CartPole budget; returns the iteration rows of metrics.jsonl."""
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=4, total_timesteps=128, eval_episodes=0,
                    learning_rate=1e-2, anneal_lr=False)
    ppo_kl.train(Args(exp_name=name, **{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return [m for m in read_metrics(run_dir) if "charts/SPS" in m]


def test_larger_beta_gives_a_smaller_kl(tmp_path, monkeypatch):
    """The same update (same seed, data and optimiser) with beta 0.01 and beta 100: the penalty holds the policy
    near pi_old, so the larger beta ends with a much smaller KL. Catches: the penalty's sign flipped."""
    free = train_tiny(tmp_path, monkeypatch, "free", kl_coef=0.01, update_epochs=8)
    held = train_tiny(tmp_path, monkeypatch, "held", kl_coef=100.0, update_epochs=8)
    assert held[0]["losses/kl"] < 0.01 * free[0]["losses/kl"]


def numpy_kl(old: np.ndarray, new: np.ndarray, continuous: bool) -> np.ndarray:
    """KL(pi_old || pi_new) per row in plain numpy, for reference."""
    if not continuous:
        log_p = old - np.logaddexp.reduce(old, axis=-1, keepdims=True)
        log_q = new - np.logaddexp.reduce(new, axis=-1, keepdims=True)
        return (np.exp(log_p) * (log_p - log_q)).sum(-1)
    (m0, l0), (m1, l1) = np.split(old, 2, -1), np.split(new, 2, -1)
    return (l1 - l0 + (np.exp(2 * l0) + (m0 - m1) ** 2) / (2 * np.exp(2 * l1)) - 0.5).sum(-1)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_loop_penalises_kl_old_new_with_the_logged_beta(env_id, tmp_path, monkeypatch):
    """End to end, six iterations chosen to visit all three branches of the rule (on CartPole):
    - the first logged beta is --kl-coef, and each next logged beta is the rule applied to the last logged (kl, beta);
    - every minibatch loss uses the iteration's logged beta;
    - the logged kl is KL(pi_old || pi_new) over the batch, recomputed in numpy from the policy's outputs before and
      after the update; each minibatch penalty is KL(stored pi_old (no gradient) || pi_theta (with gradient));
    - the checkpoint holds the beta of the next iteration.
    Catches: beta updated per minibatch; the logged beta being the updated one rather than the one used; the loss
    using the initial beta; KL(new || old) in the penalty or in the logged d; the checkpoint without the current beta."""
    batch_size, continuous = 128, env_id == "Pendulum-v1"
    outputs, penalty_betas, penalty_kl_args = [], [], []

    class RecordingAgent(Agent):
        def policy_params(self, obs):
            params = super().policy_params(obs)
            if obs.dim() == 3 or obs.shape[0] == batch_size:  # pi_old's batched pass, the pass after the update
                outputs.append(params.detach().flatten(0, -2).double().numpy().copy())
            return params

        def log_prob_entropy(self, params, actions):
            if params.dim() == 3:  # pi_old's log-probs: an iteration's update begins
                penalty_betas.append([])
            return super().log_prob_entropy(params, actions)

    def recording_surrogate(ratio, advantages, kl, kl_coef):
        penalty_betas[-1].append(kl_coef)
        return real_surrogate(ratio, advantages, kl, kl_coef)

    def recording_kl(old_params, new_params, continuous):
        if torch.is_grad_enabled():
            penalty_kl_args.append((old_params.requires_grad, new_params.requires_grad))
        return real_kl(old_params, new_params, continuous)

    real_surrogate, real_kl = ppo_kl.kl_penalty_surrogate, ppo_kl.analytic_kl
    monkeypatch.setattr(ppo_kl, "Agent", RecordingAgent)
    monkeypatch.setattr(ppo_kl, "kl_penalty_surrogate", recording_surrogate)
    monkeypatch.setattr(ppo_kl, "analytic_kl", recording_kl)
    rows = train_tiny(tmp_path, monkeypatch, "rule", env_id=env_id, total_timesteps=6 * batch_size, save_model=True,
                      kl_target=0.01, kl_coef=1.0)

    assert len(rows) == 6 and rows[0]["losses/kl_coef"] == 1.0
    for before, after in zip(rows, rows[1:]):
        assert after["losses/kl_coef"] == update_kl_coef(before["losses/kl_coef"], before["losses/kl"], 0.01)
    if not continuous:  # these settings visit every branch: halve, double and keep
        ratios = {after["losses/kl_coef"] / before["losses/kl_coef"] for before, after in zip(rows, rows[1:])}
        assert ratios == {0.5, 1.0, 2.0}
    assert [set(betas) for betas in penalty_betas] == [{m["losses/kl_coef"]} for m in rows]
    assert all(len(betas) == 4 * 2 for betas in penalty_betas)  # 4 epochs x 2 minibatches, one beta
    assert penalty_kl_args and all(args == (False, True) for args in penalty_kl_args)
    assert len(outputs) == 2 * 6
    for row, old, new in zip(rows, outputs[0::2], outputs[1::2]):
        assert row["losses/kl"] == pytest.approx(numpy_kl(old, new, continuous).mean(), rel=1e-4)
        assert abs(numpy_kl(new, old, continuous).mean() - row["losses/kl"]) > 1e-3 * row["losses/kl"]

    (checkpoint_path,) = glob.glob(str(tmp_path / "runs" / "*__rule__*" / "rule.pt"))
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["kl_coef"] == update_kl_coef(rows[-1]["losses/kl_coef"], rows[-1]["losses/kl"], 0.01)


# One-line mistakes in ppo_kl.py that this suite must catch (checked by `python tests/mutants.py --only ppo_kl`):
# (name, file, exact text, its replacement[, text, replacement ...]).
MUTANTS = [
    ("ppo_kl: the rollout samples from normalised observations left unclipped", "ppo_kl.py",
     "x = np.clip((obs - mean) * inv_std, -clip, clip)", "x = (obs - mean) * inv_std"),
    ("ppo_kl: beta-rule thresholds swapped", "ppo_kl.py",
     "if kl > 1.5 * kl_target:", "if kl > kl_target / 1.5:", "elif kl < kl_target / 1.5:", "elif kl < 1.5 * kl_target:"),
    ("ppo_kl: beta multiplied when the KL is small", "ppo_kl.py", "kl_coef = kl_coef / 2", "kl_coef = kl_coef * 2"),
    ("ppo_kl: beta unbounded", "ppo_kl.py", "return min(max(kl_coef, 1e-8), 1e8)", "return kl_coef"),
    ("ppo_kl: upper boundary inclusive", "ppo_kl.py", "if kl > 1.5 * kl_target:", "if kl >= 1.5 * kl_target:"),
    ("ppo_kl: lower boundary inclusive", "ppo_kl.py", "elif kl < kl_target / 1.5:", "elif kl <= kl_target / 1.5:"),
    ("ppo_kl: beta updated per minibatch", "ppo_kl.py", "                optimizer.step()\n",
     "                optimizer.step(); kl_coef = update_kl_coef(kl_coef, mb_kl.item(), args.kl_target)\n"),
    ("ppo_kl: logged beta is the updated one", "ppo_kl.py", '"losses/kl_coef": kl_coef,',
     '"losses/kl_coef": update_kl_coef(kl_coef, kl.item(), args.kl_target),'),
    ("ppo_kl: loss uses the initial beta", "ppo_kl.py", "mb_kl, kl_coef)", "mb_kl, args.kl_coef)"),
    ("ppo_kl: penalty KL(new || old)", "ppo_kl.py", "analytic_kl(mb_old_params, new_params, agent.continuous)",
     "analytic_kl(new_params, mb_old_params, agent.continuous)"),
    ("ppo_kl: logged d is KL(new || old)", "ppo_kl.py", "analytic_kl(batch[-1], agent.policy_params(b_obs), agent.continuous)",
     "analytic_kl(agent.policy_params(b_obs), batch[-1], agent.continuous)"),
    ("ppo_kl: categorical KL reversed", "ppo_kl.py", "(old_logp.exp() * (old_logp - new_logp))",
     "(new_logp.exp() * (new_logp - old_logp))"),
    ("ppo_kl: Gaussian KL with std for variance", "ppo_kl.py", "((2 * old_logstd).exp() + ", "(old_logstd.exp() + "),
    ("ppo_kl: Gaussian KL without the mean term", "ppo_kl.py", " + (old_mean - new_mean) ** 2)", ")"),
    ("ppo_kl: penalty sign flipped", "ppo_kl.py", "return -(ratio * advantages).mean() + kl_coef * kl",
     "return -(ratio * advantages).mean() - kl_coef * kl"),
    ("ppo_kl: checkpoint keeps the initial beta", "ppo_kl.py", '"kl_coef": kl_coef}', '"kl_coef": args.kl_coef}'),
    ("ppo_kl: no gradient clipping", "ppo_kl.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
]
