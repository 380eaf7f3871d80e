"""The math of ppo_kl.py (check 9 of IMPLEMENTATION_NOTES.md): the beta rule, the exact KL, the
penalised surrogate, and the loop that ties them together (beta once per iteration, the beta used
is the beta logged), and --target-kl's early stop."""

import glob
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

import ppo_kl
from conftest import read_metrics
from ppo_kl import Agent, Args, kl_penalty_surrogate, mean_kl, update_kl_coef


SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, every iteration's keys, bad input
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2",
             "--update-epochs", "2", "--total-timesteps", "128", "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss",
             "losses/entropy", "losses/approx_kl", "losses/explained_variance", "losses/kl",
             "losses/kl_coef", "losses/update_epochs"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"], "is less than a batch (64)"),
        "minibatches do not divide": (["--num-minibatches", "3"],
                                      "--num-minibatches 3 does not divide the batch of 64"),
        "zero epochs": (["--update-epochs", "0"], "--update-epochs must be positive"),
        "rollout too big for memory": (["--num-steps", str(10**16), "--total-timesteps",
                                        str(10**17)], "does not fit in memory"),
        "zero kl target": (["--kl-target", "0"], "--kl-target must be positive"),
        "nan kl target": (["--kl-target", "nan"], "--kl-target must be positive"),
        "negative kl coef": (["--kl-coef", "-1"], "--kl-coef must be positive"),
        "infinite kl coef": (["--kl-coef", "inf"], "--kl-coef must be positive"),
        "zero value clip": (["--vf-clip-coef", "0"], "--vf-clip-coef must be positive"),
        "nan target kl": (["--target-kl", "nan"], "--target-kl must be positive"),
        "negative target kl": (["--target-kl", "-0.01"], "--target-kl must be positive"),
    },
}

TARGET = 3 / 256  # 1.5 d_targ = 9/512 and d_targ / 1.5 = 1/128 are exact: the boundaries are sharp


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
    """PPO section 4. Catches: thresholds swapped (1.5 d_targ <-> d_targ / 1.5), beta multiplied
    instead of divided when the KL is small (or the factors swapped), >= or <= in place of the
    paper's strict comparisons."""
    assert update_kl_coef(0.8, kl, TARGET) == expected


def test_update_kl_coef_default_target():
    kls = (0.02, 0.0151, 0.012, 0.0067, 0.0066, 0.001)
    assert [update_kl_coef(1.0, d, 0.01) for d in kls] == [2, 2, 1, 1, 0.5, 0.5]


def test_update_kl_coef_never_reaches_zero():
    """Catches: an unbounded rule, where a long run with the KL far below target halves beta to
    exactly 0.0 (after about 1075 halvings), from which it can never double back."""
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


def agent_of(continuous: bool) -> Agent:
    """An agent whose policy has 4 parameters: 4 logits, or 2 means and 2 log-stds."""
    space = gym.spaces.Box(-1, 1, (2,)) if continuous else gym.spaces.Discrete(4)
    return Agent(3, space, Args())


def old_and_new_params(continuous: bool, n: int):
    """A pi_old and a pi_theta that differ in every parameter (logits; or mean and log-std),
    float64."""
    if not continuous:
        old = torch.tensor([[0.3, -1.0, -2.0, 0.0]], dtype=torch.float64)
        new = torch.tensor([[0.3, -0.5, 1.5, 0.0]], dtype=torch.float64)
    else:  # pi_theta narrower than pi_old: the two directions of the KL differ a lot
        old = torch.tensor([[0.2, -1.0, 0.0, math.log(0.5)]], dtype=torch.float64)
        new = torch.tensor([[0.9, -0.5, math.log(0.4), math.log(0.25)]], dtype=torch.float64)
    return old.repeat(n, 1), new.repeat(n, 1)


def numpy_kl(old: np.ndarray, new: np.ndarray, continuous: bool) -> np.ndarray:
    """KL(pi_old || pi_new) per row in plain numpy, the closed forms written out, for reference:
    sum p (log p - log q); sum_i log(s1/s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2."""
    if not continuous:
        log_p = old - np.logaddexp.reduce(old, axis=-1, keepdims=True)
        log_q = new - np.logaddexp.reduce(new, axis=-1, keepdims=True)
        return (np.exp(log_p) * (log_p - log_q)).sum(-1)
    (m0, l0), (m1, l1) = np.split(old, 2, -1), np.split(new, 2, -1)
    return (l1 - l0 + (np.exp(2 * l0) + (m0 - m1) ** 2) / (2 * np.exp(2 * l1)) - 0.5).sum(-1)


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_mean_kl_matches_its_sampled_estimate(continuous):
    """E_{a ~ pi_old}[log pi_old(a) - log pi_theta(a)] from 200k samples agrees with
    mean_kl(agent, old, new) within 4 standard errors, and mean_kl(agent, new, old), the reverse
    KL(pi_theta || pi_old), is many standard errors away. Catches: KL(new || old) in place of
    KL(old || new); a wrong policy distribution (std for variance, no exp of the log-std)."""
    torch.manual_seed(0)
    n = 200_000
    agent = agent_of(continuous)
    old, new = old_and_new_params(continuous, n)
    p, q = torch_dist(old, continuous), torch_dist(new, continuous)
    actions = p.sample()
    log_ratio = p.log_prob(actions) - q.log_prob(actions)
    estimate, standard_error = log_ratio.mean().item(), log_ratio.std().item() / n**0.5
    with torch.no_grad():
        exact = mean_kl(agent, old[:1], new[:1]).item()
        reverse = mean_kl(agent, new[:1], old[:1]).item()
    assert abs(exact - estimate) < 4 * standard_error
    assert abs(reverse - estimate) > 20 * standard_error


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_mean_kl_is_the_closed_form_averaged_over_states(continuous):
    """Many random pairs, to float64 precision, against the closed forms written out in numpy: one
    KL per state (summed over the action dimensions), then the mean over the states. Catches: a sum
    over the batch, a mean over the action dimensions, KL(new || old)."""
    torch.manual_seed(3)
    agent = agent_of(continuous)
    old, new = torch.randn(64, 4, dtype=torch.float64), torch.randn(64, 4, dtype=torch.float64)
    with torch.no_grad():
        kl = mean_kl(agent, old, new).item()
        first = mean_kl(agent, old[:1], new[:1]).item()
    expected = numpy_kl(old.numpy(), new.numpy(), continuous)
    assert kl == pytest.approx(expected.mean(), rel=1e-10)
    assert first == pytest.approx(expected[0], rel=1e-10)


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_kl_is_zero_with_zero_gradient_at_theta_old(continuous):
    """KL(pi_old || pi_theta) has its minimum, 0, at theta = theta_old: value and gradient vanish
    there, and it is positive around it, state by state. Catches: a KL whose minimum is not at
    theta_old (the gradient is then not zero)."""
    torch.manual_seed(1)
    agent = agent_of(continuous)
    old = torch.randn(8, 4, dtype=torch.float64)
    new = old.clone().requires_grad_()
    kl = mean_kl(agent, old, new)
    (gradient,) = torch.autograd.grad(kl, new)
    torch.testing.assert_close(kl, torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(gradient, torch.zeros_like(gradient), rtol=0, atol=1e-12)
    moved = old + 0.1 * torch.randn_like(old)
    with torch.no_grad():
        assert all(mean_kl(agent, old[i:i + 1], moved[i:i + 1]) > 0 for i in range(8))


def test_kl_penalty_surrogate_values_and_gradient():
    """-(mean(r A) - beta KL) by hand; d loss / d KL = +beta. Catches: the penalty's sign flipped
    (a reward for moving away from pi_old), beta applied to the surrogate instead of the KL, a sum
    in place of the mean."""
    ratio = torch.tensor([1.2, 0.5], dtype=torch.float64, requires_grad=True)
    advantages = torch.tensor([1.0, -2.0], dtype=torch.float64)
    kl = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    loss = kl_penalty_surrogate(ratio, advantages, kl, 2.0)
    assert loss.item() == pytest.approx(-(1.2 - 1.0) / 2 + 2.0 * 0.3)
    loss.backward()
    assert kl.grad.item() == pytest.approx(2.0)
    torch.testing.assert_close(ratio.grad, -advantages / 2)


def train_tiny(tmp_path, monkeypatch, name, **overrides) -> list[dict]:
    """Train in-process with a small CartPole budget; returns metrics.jsonl's iteration rows."""
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=4,
                    total_timesteps=128, eval_episodes=0, learning_rate=1e-2, anneal_lr=False)
    ppo_kl.train(Args(exp_name=name, **{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return [m for m in read_metrics(run_dir) if "charts/SPS" in m]


def test_larger_beta_gives_a_smaller_kl(tmp_path, monkeypatch):
    """The same update (same seed, data and optimiser) with beta 0.01 and beta 100: the penalty
    holds the policy near pi_old, so the larger beta ends with a much smaller KL. Catches: the
    penalty's sign flipped."""
    free = train_tiny(tmp_path, monkeypatch, "free", kl_coef=0.01, update_epochs=8)
    held = train_tiny(tmp_path, monkeypatch, "held", kl_coef=100.0, update_epochs=8)
    assert held[0]["losses/kl"] < 0.01 * free[0]["losses/kl"]


def test_gradient_clipping_limits_the_step(tmp_path, monkeypatch):
    """With a global gradient norm clipped to 1e-9, Adam (eps 1e-5) barely moves: the policy stays
    put. Catches: no gradient clipping. At ppo_clip.py's learning rate: at train_tiny's 1e-2 the
    clipped policy still moves by a KL of about 5e-9."""
    free = train_tiny(tmp_path, monkeypatch, "free", learning_rate=2.5e-4)
    clipped = train_tiny(tmp_path, monkeypatch, "clipped", learning_rate=2.5e-4, max_grad_norm=1e-9)
    assert free[0]["losses/kl"] > 1e-6
    assert clipped[0]["losses/kl"] < 1e-9


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_loop_penalises_kl_old_new_with_the_logged_beta(env_id, tmp_path, monkeypatch):
    """End to end, six iterations chosen to visit all three branches of the rule (on CartPole):
    - the first logged beta is --kl-coef, and each next logged beta is the rule applied to the last
      logged (kl, beta);
    - every minibatch loss uses the iteration's logged beta;
    - the logged kl is KL(pi_old || pi_new) over the batch, recomputed in numpy from the policy's
      outputs before and after the update; each minibatch penalty is KL(stored pi_old (no
      gradient) || pi_theta (with gradient));
    - the checkpoint holds the beta of the next iteration.
    Catches: beta updated per minibatch; the logged beta being the updated one rather than the one
    used; the loss using the initial beta; KL(new || old) in the penalty or in the logged d; the
    checkpoint without the current beta."""
    batch_size, continuous = 128, env_id == "Pendulum-v1"
    outputs, penalty_betas, penalty_kl_args = [], [], []

    class RecordingAgent(Agent):
        def policy_params(self, obs):
            params = super().policy_params(obs)
            if obs.dim() == 3 or obs.shape[0] == batch_size:  # pi_old's pass, the pass after
                outputs.append(params.detach().flatten(0, -2).double().numpy().copy())
            return params

        def log_prob_entropy(self, params, actions):
            if params.dim() == 3:  # pi_old's log-probs: an iteration's update begins
                penalty_betas.append([])
            return super().log_prob_entropy(params, actions)

    def recording_surrogate(ratio, advantages, kl, kl_coef):
        penalty_betas[-1].append(kl_coef)
        return real_surrogate(ratio, advantages, kl, kl_coef)

    def recording_kl(agent, old_params, params):
        if torch.is_grad_enabled():
            penalty_kl_args.append((old_params.requires_grad, params.requires_grad))
        return real_kl(agent, old_params, params)

    real_surrogate, real_kl = ppo_kl.kl_penalty_surrogate, ppo_kl.mean_kl
    monkeypatch.setattr(ppo_kl, "Agent", RecordingAgent)
    monkeypatch.setattr(ppo_kl, "kl_penalty_surrogate", recording_surrogate)
    monkeypatch.setattr(ppo_kl, "mean_kl", recording_kl)
    rows = train_tiny(tmp_path, monkeypatch, "rule", env_id=env_id, total_timesteps=6 * batch_size,
                      save_model=True, kl_target=0.01, kl_coef=1.0)

    assert len(rows) == 6 and rows[0]["losses/kl_coef"] == 1.0
    for before, after in zip(rows, rows[1:]):
        expected = update_kl_coef(before["losses/kl_coef"], before["losses/kl"], 0.01)
        assert after["losses/kl_coef"] == expected
    if not continuous:  # these settings visit every branch: halve, double and keep
        ratios = {after["losses/kl_coef"] / before["losses/kl_coef"]
                  for before, after in zip(rows, rows[1:])}
        assert ratios == {0.5, 1.0, 2.0}
    assert [set(betas) for betas in penalty_betas] == [{m["losses/kl_coef"]} for m in rows]
    assert all(len(betas) == 4 * 2 for betas in penalty_betas)  # 4 epochs x 2 minibatches
    assert len(penalty_kl_args) == 6 * 4 * 2
    assert all(args == (False, True) for args in penalty_kl_args)
    assert len(outputs) == 2 * 6
    for row, old, new in zip(rows, outputs[0::2], outputs[1::2]):
        assert row["losses/kl"] == pytest.approx(numpy_kl(old, new, continuous).mean(), rel=1e-4)
        reverse = numpy_kl(new, old, continuous).mean()
        assert abs(reverse - row["losses/kl"]) > 1e-3 * row["losses/kl"]

    (checkpoint_path,) = glob.glob(str(tmp_path / "runs" / "*__rule__*" / "rule.pt"))
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    last = rows[-1]
    assert checkpoint["kl_coef"] == update_kl_coef(last["losses/kl_coef"], last["losses/kl"], 0.01)


def test_target_kl_stops_after_the_first_epoch_over_it(tmp_path, monkeypatch):
    """--target-kl, ppo_clip.py's rule: after each epoch, stop if that epoch's mean approximate KL
    exceeds the target; losses/update_epochs logs the epochs run. Scripted KLs of 0, 0.015, 0.015,
    ... per epoch: the rule stops after epoch 2 (2 x 2 minibatch steps, each with the penalised
    loss); a running mean over all epochs so far would stop after epoch 4, a flipped comparison
    after epoch 1. Without --target-kl all 4 epochs run."""
    calls, steps = [], []

    def scripted_kl(logratio):
        calls.append(None)  # 2 minibatches per epoch, 4 epochs
        return torch.tensor(0.0 if (len(calls) - 1) % 8 < 2 else 0.015)

    def counting_surrogate(*args):
        steps.append(None)
        return real_surrogate(*args)

    real_surrogate = ppo_kl.kl_penalty_surrogate
    monkeypatch.setattr(ppo_kl, "approx_kl", scripted_kl)
    monkeypatch.setattr(ppo_kl, "kl_penalty_surrogate", counting_surrogate)
    rows = train_tiny(tmp_path, monkeypatch, "target", target_kl=0.01)
    assert [m["losses/update_epochs"] for m in rows] == [2]
    assert len(calls) == len(steps) == 2 * 2
    calls.clear()
    steps.clear()
    rows = train_tiny(tmp_path, monkeypatch, "no_target")
    assert [m["losses/update_epochs"] for m in rows] == [4]
    assert len(calls) == len(steps) == 4 * 2


def sorted_pairs(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """The pairs (a_i, b_i), sorted: the same multiset of pairs whatever the minibatches' order."""
    a, b = a.detach().double().numpy(), b.detach().double().numpy()
    order = np.lexsort((b, a))
    return np.stack([a[order], b[order]])


def test_the_critic_regresses_on_the_returns_around_its_old_values(tmp_path, monkeypatch):
    """value_loss(values, returns, old_values, clip_coef): in every epoch the minibatches'
    (V_old, R) pairs are the rollout's (V(s), A + V(s)) pairs, with A from GAE, and the clip is
    --vf-clip-coef. Catches: the old argument order (the critic regressed on V_old, clipped
    around R)."""
    seen, calls = [], []
    real_gae, real_value_loss = ppo_kl.compute_gae, ppo_kl.value_loss

    def recording_gae(*a):
        advantages = real_gae(*a)
        seen.append((a[1].flatten().clone(), advantages.flatten().clone()))
        return advantages

    def recording_value_loss(values, returns, old_values=None, clip_coef=None):
        calls.append((returns.detach().clone(), old_values.detach().clone(), clip_coef))
        return real_value_loss(values, returns, old_values, clip_coef)

    monkeypatch.setattr(ppo_kl, "compute_gae", recording_gae)
    monkeypatch.setattr(ppo_kl, "value_loss", recording_value_loss)
    train_tiny(tmp_path, monkeypatch, "critic", vf_clip_coef=0.3)
    ((values, advantages),) = seen
    expected = sorted_pairs(values, advantages + values)
    assert len(calls) == 4 * 2 and all(clip_coef == 0.3 for *_, clip_coef in calls)
    for epoch in range(4):
        returns, old_values = (torch.cat(x) for x in zip(*[c[:2] for c in calls[2 * epoch:][:2]]))
        np.testing.assert_allclose(sorted_pairs(old_values, returns), expected, rtol=1e-6)


# One-line mistakes in ppo_kl.py that this suite must catch (`python tests/mutants.py --only
# ppo_kl`): (name, file, exact text, its replacement[, text, replacement ...]). The plumbing's
# mutants are in test_ppo_clip.py only (the plumbing is the same bytes in every script).
MUTANTS = [
    ("ppo_kl: beta-rule thresholds swapped", "ppo_kl.py",
     "if kl > 1.5 * kl_target:", "if kl > kl_target / 1.5:",
     "elif kl < kl_target / 1.5:", "elif kl < 1.5 * kl_target:"),
    ("ppo_kl: beta multiplied when the KL is small", "ppo_kl.py",
     "kl_coef = kl_coef / 2", "kl_coef = kl_coef * 2"),
    ("ppo_kl: beta unbounded", "ppo_kl.py",
     "return min(max(kl_coef, 1e-8), 1e8)", "return kl_coef"),
    ("ppo_kl: upper boundary inclusive", "ppo_kl.py",
     "if kl > 1.5 * kl_target:", "if kl >= 1.5 * kl_target:"),
    ("ppo_kl: lower boundary inclusive", "ppo_kl.py",
     "elif kl < kl_target / 1.5:", "elif kl <= kl_target / 1.5:"),
    ("ppo_kl: beta updated per minibatch", "ppo_kl.py", "                optimizer.step()\n",
     "                optimizer.step(); "
     "kl_coef = update_kl_coef(kl_coef, mb_kl.item(), args.kl_target)\n"),
    ("ppo_kl: logged beta is the updated one", "ppo_kl.py", '"losses/kl_coef": kl_coef,',
     '"losses/kl_coef": update_kl_coef(kl_coef, kl, args.kl_target),'),
    ("ppo_kl: loss uses the initial beta", "ppo_kl.py", "mb_kl, kl_coef)", "mb_kl, args.kl_coef)"),
    ("ppo_kl: mean_kl is KL(new || old)", "ppo_kl.py",
     "kl_divergence(agent.dist(old_params), agent.dist(params))",
     "kl_divergence(agent.dist(params), agent.dist(old_params))"),
    ("ppo_kl: mean_kl summed over the states", "ppo_kl.py",
     "agent.dist(params)).mean()", "agent.dist(params)).sum()"),
    ("ppo_kl: penalty KL(new || old)", "ppo_kl.py", "mean_kl(agent, mb_old_params, new_params)",
     "mean_kl(agent, new_params, mb_old_params)"),
    ("ppo_kl: penalty KL without gradient (pi_theta detached)", "ppo_kl.py",
     "mean_kl(agent, mb_old_params, new_params)",
     "mean_kl(agent, mb_old_params, new_params.detach())"),
    ("ppo_kl: logged d is KL(new || old)", "ppo_kl.py",
     "mean_kl(agent, b_old_params, agent.policy_params(b_obs))",
     "mean_kl(agent, agent.policy_params(b_obs), b_old_params)"),
    ("ppo_kl: penalty sign flipped", "ppo_kl.py",
     "return -(ratio * advantages).mean() + kl_coef * kl",
     "return -(ratio * advantages).mean() - kl_coef * kl"),
    ("ppo_kl: checkpoint keeps the initial beta", "ppo_kl.py",
     "return_norm.state_dict(), kl_coef=kl_coef)",
     "return_norm.state_dict(), kl_coef=args.kl_coef)"),
    ("ppo_kl: value_loss called in the old argument order", "ppo_kl.py",
     "value_loss(agent.value(mb_obs), mb_returns, mb_values,",
     "value_loss(agent.value(mb_obs), mb_values, mb_returns,"),
    ("ppo_kl: target-KL comparison flipped", "ppo_kl.py", "[:, 3].mean() > args.target_kl",
     "[:, 3].mean() < args.target_kl"),
    ("ppo_kl: target-KL on the mean of all epochs so far", "ppo_kl.py",
     "torch.stack(epoch_stats)[:, 3]", "torch.stack(stats)[:, 3]"),
    ("ppo_kl: target-KL ignored", "ppo_kl.py",
     "if args.target_kl and", "if False and"),
    ("ppo_kl: update_epochs logs the flag, not the epochs run", "ppo_kl.py",
     '"losses/update_epochs": epoch + 1', '"losses/update_epochs": args.update_epochs'),
    ("ppo_kl: no gradient clipping", "ppo_kl.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
]
