"""The math of vpg_baseline.py (checks 1 and 2 of IMPLEMENTATION_NOTES.md with a baseline, GAE's
bias), what goes into its advantages, what its value function is fitted to, and which parameters
each of its two steps moves."""

import glob
import math

import pytest
import torch

import vpg_baseline
from conftest import read_metrics
from exact_gradients import (DTYPE, bandit, per_episode_gradients, random_mdp, sample_episodes,
                             total_variance, z_scores)
from test_reinforce import check_batch_scaling
from vpg_baseline import Agent, Args, advantages_and_returns, policy_gradient_loss, value_loss

SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, every iteration's keys, bad input
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--vf-iters", "5", "--total-timesteps", "128",
             "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss",
             "losses/entropy", "losses/kl", "losses/explained_variance"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"],
                                   "--total-timesteps 50 is less than a batch (64)"),
        "zero value iterations": (["--vf-iters", "0"], "--vf-iters must be positive"),
        "zero value learning rate": (["--vf-learning-rate", "0"],
                                     "--vf-learning-rate must be positive"),
        "diverging critic": (["--vf-learning-rate", "1e30"], "the update became non-finite"),
        "negative lambda": (["--gae-lambda", "-0.1"], "--gae-lambda must be in [0, 1]"),
        "batch of one": (["--num-envs", "1", "--num-steps", "1", "--total-timesteps", "8"],
                         "(mini)batches of 1 sample: advantage normalisation needs 2 or more"),
    },
}
Z = 4.5  # |z| bound for a correct estimator (several components: a little above the usual 4)


def test_advantages_and_returns_by_hand():
    """One column, gamma 0.5: a terminated episode [1, 2], then [3, 4] cut by a time limit whose
    final observation has V = 10. G = [2, 2, 7.5, 9]: no bootstrap at the termination, 0.5 * 10 at
    the time limit. A = G - V with lambda = 1, the TD error r + gamma V(s') - V(s) with lambda = 0.
    Catches: the advantage's sign flipped, truncation treated as termination (for G or for GAE's
    advantages), a return leaking across episodes."""
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DTYPE)
    values = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=DTYPE)
    next_values = torch.tensor([-1.0, 99.0, 3.0, 10.0], dtype=DTYPE)  # 99: V(terminal), unused
    terminated = torch.tensor([False, True, False, False])
    dones = torch.tensor([False, True, False, True])
    returns = torch.tensor([2.0, 2.0, 7.5, 9.0], dtype=DTYPE)
    advantages, got_returns = advantages_and_returns(rewards, values, next_values, terminated,
                                                     dones, 0.5, 1.0)
    torch.testing.assert_close(got_returns, returns)
    torch.testing.assert_close(advantages, returns - values)
    td_errors = torch.tensor([1.0 - 0.5 - 0.5, 2.0 + 1.0, 3.0 + 1.5 - 2.0, 4.0 + 5.0 - 3.0],
                             dtype=DTYPE)
    advantages, got_returns = advantages_and_returns(rewards, values, next_values, terminated,
                                                     dones, 0.5, 0.0)
    torch.testing.assert_close(advantages, td_errors)
    torch.testing.assert_close(got_returns, returns)  # the value target does not depend on lambda


def test_value_loss_is_half_the_mean_squared_error():
    got = value_loss(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])).item()
    assert got == pytest.approx(0.5 * (1 + 4) / 2)


def test_bandit_baselines_keep_the_mean_and_lower_the_variance():
    """Check 1 through the script's advantage and loss: exact grad J = pi * (r - J). A constant
    baseline b = J and a baseline computed from the policy itself (V = sum_a pi(a) r_a, which
    depends on theta) both leave the mean unchanged and lower the variance, because the loss treats
    A as a constant. Catches: the advantage's sign flipped (G - V becomes V - G), the gradient
    flowing through the baseline into the policy loss (the detach removed)."""
    mdp = bandit([10.0, 11.0, 8.0, 12.0], reward_noise=1.0)
    theta = torch.tensor([[0.3, -0.2, 0.5, 0.0]], dtype=DTYPE)
    pi = theta.softmax(-1)
    J = (pi * mdp.r).sum()
    exact = pi * (mdp.r - J)
    batch = sample_episodes(mdp, theta, columns=40_000, episodes_per_column=1, seed=1)
    terminated = batch.dones

    def advantages_with(values):  # one-step episodes: V(s') is never used
        return advantages_and_returns(batch.rewards, values, torch.zeros_like(batch.rewards),
                                      terminated, batch.dones, mdp.gamma, 1.0)[0]

    def from_policy(copies):  # G - V(s), V(s) = sum_a pi_theta(a) r_a with its graph back to
        # each theta copy (written out: advantages_and_returns' A = G - V has no gradient in V)
        G = advantages_with(torch.zeros_like(batch.rewards))
        return G - (copies[batch.episode, 0].softmax(-1) * mdp.r[0]).sum(-1)

    plain = per_episode_gradients(theta, batch, policy_gradient_loss,
                                  lambda copies: advantages_with(torch.zeros_like(batch.rewards)))
    constant = per_episode_gradients(
        theta, batch, policy_gradient_loss,
        lambda copies: advantages_with(torch.full_like(batch.rewards, J.item())))
    baselined = per_episode_gradients(theta, batch, policy_gradient_loss, from_policy)
    for estimates in (plain, constant, baselined):
        assert z_scores(estimates, exact).abs().max() < Z
    assert total_variance(constant) < 0.1 * total_variance(plain)
    assert total_variance(baselined) < 0.1 * total_variance(plain)
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
    advantages, _ = advantages_and_returns(batch.rewards, V_ext[batch.states],
                                           V_ext[batch.next_states], terminated, batch.dones,
                                           mdp.gamma, gae_lambda)
    return per_episode_gradients(theta, batch, policy_gradient_loss, lambda copies: advantages)


def test_baseline_keeps_the_reinforce_gradient_and_lowers_its_variance(mdp_episodes):
    """Check 2 with a baseline: on the tabular MDP (two whole episodes per column), A = G - V with
    the exact V estimates the same gamma^t-dropped gradient as REINFORCE with reward-to-go (V = 0),
    with less variance."""
    mdp, theta, batch = mdp_episodes
    dropped = mdp.pgt_gradient(theta, drop_discount=True)
    V_exact, _, _ = mdp.solve(theta, mdp.gamma)
    no_baseline = mdp_estimates(mdp, theta, batch, torch.zeros(3, dtype=DTYPE), 1.0)
    baseline = mdp_estimates(mdp, theta, batch, V_exact, 1.0)
    assert z_scores(no_baseline, dropped).abs().max() < Z
    assert z_scores(baseline, dropped).abs().max() < Z
    assert total_variance(baseline) < 0.5 * total_variance(no_baseline)


def test_gae_lambda_trades_bias_for_variance(mdp_episodes):
    """With the exact V every lambda is unbiased (E[delta_t | s_t, a_t] = A(s_t, a_t)) and a smaller
    lambda has less variance; with a poor V (zero) lambda = 1 is still unbiased, lambda = 0 is
    not."""
    mdp, theta, batch = mdp_episodes
    dropped = mdp.pgt_gradient(theta, drop_discount=True)
    V_exact, _, _ = mdp.solve(theta, mdp.gamma)
    exact_v = {lam: mdp_estimates(mdp, theta, batch, V_exact, lam) for lam in (1.0, 0.5, 0.0)}
    for estimates in exact_v.values():
        assert z_scores(estimates, dropped).abs().max() < Z
    assert total_variance(exact_v[0.0]) < total_variance(exact_v[0.5]) < total_variance(
        exact_v[1.0])
    zero = torch.zeros(3, dtype=DTYPE)
    assert z_scores(mdp_estimates(mdp, theta, batch, zero, 1.0), dropped).abs().max() < Z
    assert z_scores(mdp_estimates(mdp, theta, batch, zero, 0.0), dropped).abs().max() > 2 * Z


def train_toy(tmp_path, monkeypatch, env_id: str, **overrides):
    """Train in-process on a toy env whose observation is the step count, reward 1 per step,
    recording the inputs of every advantages_and_returns call and every value_loss call; returns
    them and the rows of metrics.jsonl."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    estimated, fitted = [], []
    real_estimate, real_loss = vpg_baseline.advantages_and_returns, vpg_baseline.value_loss

    def recorded_loss(v, g, *rest):
        fitted.append((v.detach().clone(), g.clone()))
        return real_loss(v, g, *rest)

    def recorded_estimate(*a):
        estimated.append([x.clone() for x in a[:5]])
        return real_estimate(*a)

    monkeypatch.setattr(vpg_baseline, "advantages_and_returns", recorded_estimate)
    monkeypatch.setattr(vpg_baseline, "value_loss", recorded_loss)
    monkeypatch.chdir(tmp_path)
    settings = dict(env_id=env_id, num_envs=2, num_steps=2, total_timesteps=24, gamma=0.9,
                    vf_iters=3, eval_episodes=0, exp_name="toy")
    vpg_baseline.train(Args(**{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*__toy__*"))
    return estimated, fitted, read_metrics(run_dir)


def test_value_target_is_the_return_without_bootstrap_at_termination(tmp_path, monkeypatch):
    """toy/CountTerminating-v0 ends by termination after 3 steps: every batch (2 envs, each
    finishing the episode it is in after 2 steps) holds whole episodes, and V is fitted to
    G = 1 + 0.9 + 0.81, 1 + 0.9, 1 at every step of the fit, from V as it was before the fit (the
    first prediction is the V the advantages used). GAE gets terminated = done = the last step of
    each episode. Catches: V fitted to the advantages or the rewards, partial episodes, advantages
    from V after the fit, terminated and done swapped at the call."""
    estimated, fitted, _ = train_toy(tmp_path, monkeypatch, "toy/CountTerminating-v0",
                                     total_timesteps=24)
    assert len(estimated) == 4 and len(fitted) == 4 * 3
    expected = torch.tensor([2.71, 1.9, 1.0] * 2)
    for iteration, (rewards, values, next_values, terminated, dones) in enumerate(estimated):
        assert torch.equal(terminated, dones) and int(terminated.sum()) == 2
        for predicted, target in fitted[3 * iteration: 3 * iteration + 3]:
            torch.testing.assert_close(target.sort().values, expected.sort().values)
        first_prediction, _ = fitted[3 * iteration]
        torch.testing.assert_close(first_prediction, values[rewards != 0])  # padding: reward 0


def test_truncation_bootstraps_from_the_final_observation(tmp_path, monkeypatch):
    """toy/Count-v0 is cut by a time limit after 5 steps (observation = step count): GAE gets
    terminated False and done True there; V(s') of the last step is V of the final observation (5),
    not of the next episode's first (0) nor of the last step's own (4), and the value target is
    G_t = sum_k 0.9^k + 0.9^(5 - t) V(final obs). Inside an episode V(s') is the next step's V(s).
    Catches: truncation treated as termination, V(s') from the reset observation or from s_t, V(s)
    and V(s') swapped."""
    estimated, fitted, _ = train_toy(tmp_path, monkeypatch, "toy/Count-v0", num_steps=7,
                                     total_timesteps=40)
    for iteration, (rewards, values, next_values, terminated, dones) in enumerate(estimated):
        assert not terminated.any() and dones.sum() == 4  # two 5-step episodes per env, no padding
        inside = ~dones[:-1]
        assert torch.equal(next_values[:-1][inside], values[1:][inside])
        final = next_values[dones]
        assert torch.all(final == final[0])
        assert torch.all(final != values[0, 0]) and torch.all(final != values[4, 0])  # V(5)
        steps_left = 5 - torch.arange(5, dtype=torch.float32)
        episode = (1 - 0.9**steps_left) / (1 - 0.9) + 0.9**steps_left * final[0]
        _, target = fitted[3 * iteration]
        torch.testing.assert_close(target.sort().values, episode.repeat(4).sort().values)


def test_the_value_function_learns_the_returns(tmp_path, monkeypatch):
    """Several batches of 80 Adam steps on toy/CountTerminating-v0 fit V to the three returns: the
    explained variance of V before the last fit is close to 1. Catches: fewer fit steps than asked,
    the fit on another target."""
    _, _, metrics = train_toy(tmp_path, monkeypatch, "toy/CountTerminating-v0", vf_iters=80,
                              vf_learning_rate=1e-2, total_timesteps=120)
    explained = [m["losses/explained_variance"] for m in metrics if "charts/SPS" in m]
    assert explained[-1] > 0.95 and explained[0] < 0.5


class RecordingAgent(Agent):
    """The script's Agent, remembering every instance, so a test can look inside a run."""

    made = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingAgent.made.append(self)


def test_each_step_moves_its_own_parameters(tmp_path, monkeypatch):
    """End to end on Pendulum (a Gaussian policy; 200-step episodes, so batches of 400 steps): the
    parameters are read when the policy loss is built (before the policy's step) and at every value
    loss (before each of the critic's vf_iters steps). The policy's step moves the actor and the
    log-std and never the critic; the critic's steps move the critic and nothing else. Catches: the
    log-std left out of the policy's optimizer, the critic moved by the policy's step."""
    events, real_pg, real_v = [], vpg_baseline.policy_gradient_loss, vpg_baseline.value_loss

    def snapshot(kind):
        (agent,) = RecordingAgent.made
        events.append((kind, {k: p.detach().clone() for k, p in agent.named_parameters()}))

    def recorded_pg(*a):
        snapshot("policy")
        return real_pg(*a)

    def recorded_v(*a):
        snapshot("value")
        return real_v(*a)

    RecordingAgent.made = []
    monkeypatch.setattr(vpg_baseline, "Agent", RecordingAgent)
    monkeypatch.setattr(vpg_baseline, "policy_gradient_loss", recorded_pg)
    monkeypatch.setattr(vpg_baseline, "value_loss", recorded_v)
    monkeypatch.chdir(tmp_path)
    vpg_baseline.train(Args(env_id="Pendulum-v1", num_envs=2, num_steps=1, total_timesteps=800,
                            vf_iters=3, eval_episodes=0))
    assert [kind for kind, _ in events] == ["policy", "value", "value", "value"] * 2
    (agent,) = RecordingAgent.made
    final = {k: p.detach() for k, p in agent.named_parameters()}
    states = [params for _, params in events] + [final]

    def moved(a, b):
        return {k for k in a if not torch.equal(a[k], b[k])}

    critic = {k for k in final if k.startswith("critic.")}
    policy = set(final) - critic
    assert "actor_logstd" in policy and any(k.startswith("actor.") for k in policy)
    for i in (0, 4):  # the policy's step: from its loss to the first value loss
        assert moved(states[i], states[i + 1]) == policy
        for j in (i + 1, i + 2, i + 3):  # the critic's steps, up to the next policy loss
            assert moved(states[j], states[j + 1]) == critic


def test_a_diverging_critic_is_stopped_by_its_own_check(tmp_path, monkeypatch):
    """A critic whose regression overflows (learning rate 1e30) stops the run in the iteration it
    diverges, naming the value loss, before its NaN values reach the next iteration's advantages
    and are blamed on the policy."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        vpg_baseline.train(Args(num_envs=2, num_steps=32, total_timesteps=128, vf_iters=5,
                                vf_learning_rate=1e30, eval_episodes=0))
    message = str(stopped.value.code)
    assert message.startswith("error: the update became non-finite") and "(value " in message
    assert "policy" not in message


def test_a_batch_of_one_is_refused_with_advantage_normalisation():
    """--norm-adv standardises over the batch: one sample has no std (NaN). Without it, one sample
    is a valid batch."""
    with pytest.raises(SystemExit, match=r"\(mini\)batches of 1 sample"):
        vpg_baseline.check_args(Args(num_envs=1, num_steps=1, total_timesteps=8))
    vpg_baseline.check_args(Args(num_envs=1, num_steps=1, total_timesteps=8, norm_adv=False))


def test_reward_scaling_in_the_loop(tmp_path, monkeypatch):
    """End to end on CartPole (reward 1 per step) with --norm-reward, gamma 0.9: every batch starts
    new episodes, so scale_rewards gets a zero carry; it gets the valid mask, so the statistics it
    moves are those of R_t = 1 + gamma + ... + gamma^j over the valid steps of every batch so far
    (j: the step's index in its episode, by hand); the advantages are estimated from the scaled
    rewards, 1 / std per valid step, 0 in the padding. Catches: a carry that is not zero, the valid
    mask not passed, the raw rewards used for the advantages and the value target."""
    gamma, calls, estimated = 0.9, [], []
    real_scale, real_estimate = vpg_baseline.scale_rewards, vpg_baseline.advantages_and_returns

    def recorded_scale(rewards, dones, gamma_, running_return, return_norm, valid=None):
        calls.append((dones.clone(), running_return.clone(), valid))
        out = real_scale(rewards, dones, gamma_, running_return, return_norm, valid)
        calls[-1] += (return_norm.mean.clone(), return_norm.var.clone(),
                      return_norm.count.clone())
        return out

    monkeypatch.setattr(vpg_baseline, "scale_rewards", recorded_scale)
    monkeypatch.setattr(vpg_baseline, "advantages_and_returns",
                        lambda *a: estimated.append(a[0].clone()) or real_estimate(*a))
    monkeypatch.chdir(tmp_path)
    vpg_baseline.train(Args(exp_name="scaled", num_envs=2, num_steps=8, total_timesteps=100,
                            gamma=gamma, vf_iters=2, norm_reward=True, eval_episodes=0))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*__scaled__*"))
    steps = [0] + [m["global_step"] for m in read_metrics(run_dir) if "charts/SPS" in m]
    assert len(calls) == len(estimated) == len(steps) - 1 >= 2
    checked = check_batch_scaling(calls, steps, gamma)
    for (valid, _, expected_var), rewards in zip(checked, estimated):
        torch.testing.assert_close(rewards, valid / math.sqrt(expected_var + 1e-8))


def test_gradient_clipping_limits_the_policy_step(tmp_path, monkeypatch):
    """With the policy's gradient norm clipped to 1e-9, Adam (eps 1e-5) barely moves the policy:
    the KL of its step is tiny next to an unclipped one's. Catches: no clipping, the clipping handed
    other parameters than the policy's."""
    kls = {}
    monkeypatch.chdir(tmp_path)
    for name, norm in (("free", 0.5), ("clipped", 1e-9)):
        vpg_baseline.train(Args(exp_name=name, num_envs=2, num_steps=32, total_timesteps=64,
                                vf_iters=1, max_grad_norm=norm, eval_episodes=0))
        (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
        kls[name] = [m["losses/kl"] for m in read_metrics(run_dir) if "charts/SPS" in m][0]
    assert kls["free"] > 1e-3
    assert kls["clipped"] < 1e-5 * kls["free"]


# One-line mistakes that this suite must catch (`python tests/mutants.py --only vpg_baseline`):
# (name, file, exact text, its replacement[, text, replacement ...]).
MUTANTS = [
    ("vpg_baseline: critic's non-finite loss not checked", "vpg_baseline.py",
     "run.check_finite(global_step, value=v_loss)", "pass"),
    ("vpg_baseline: batch of one sample accepted with --norm-adv", "vpg_baseline.py",
     "elif not problems and args.norm_adv and batch // minibatches < 2:", "elif False:"),
    ("vpg_baseline: advantage with the wrong sign", "vpg_baseline.py",
     "return returns - values, returns", "return values - returns, returns"),
    ("vpg_baseline: gradient flows through the baseline (detach removed)", "vpg_baseline.py",
     "return -(logprobs * weights.detach()).mean()", "return -(logprobs * weights).mean()"),
    ("vpg_baseline: policy loss sign flipped", "vpg_baseline.py",
     "return -(logprobs * weights.detach()).mean()", "return (logprobs * weights.detach()).mean()"),
    ("vpg_baseline: value fit on the advantages", "vpg_baseline.py",
     "v_loss = value_loss(agent.value(b_obs), b_returns)",
     "v_loss = value_loss(agent.value(b_obs), b_advantages)"),
    ("vpg_baseline: value fit on the rewards", "vpg_baseline.py",
     "v_loss = value_loss(agent.value(b_obs), b_returns)",
     "v_loss = value_loss(agent.value(b_obs), rewards[valid])"),
    ("vpg_baseline: one value step whatever --vf-iters", "vpg_baseline.py",
     "for _ in range(args.vf_iters):", "for _ in range(1):"),
    ("vpg_baseline: truncation treated as termination", "vpg_baseline.py",
     "returns = compute_gae(rewards, values, next_values, terminated, dones, gamma, 1.0) + values",
     "returns = compute_gae(rewards, values, next_values, dones, dones, gamma, 1.0) + values"),
    ("vpg_baseline: truncation treated as termination in GAE's advantages (lambda < 1)",
     "vpg_baseline.py",
     "return compute_gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda),",
     "return compute_gae(rewards, values, next_values, dones, dones, gamma, gae_lambda),"),
    ("vpg_baseline: done passed as terminated to the advantages (no bootstrap at a time limit)",
     "vpg_baseline.py", "= advantages_and_returns(rewards, values, next_values, terminated,",
     "= advantages_and_returns(rewards, values, next_values, dones,"),
    ("vpg_baseline: terminated passed as done (returns leak across time limits)",
     "vpg_baseline.py", " " * 57 + "dones, args.gamma,", " " * 57 + "terminated, args.gamma,"),
    ("vpg_baseline: V(s') is V(s) (the next observation not recorded)", "vpg_baseline.py",
     "next_obs_row[i] = observation[i]  # s_{t+1}", "pass  # s_{t+1}"),
    ("vpg_baseline: V(s') from the next episode's first observation", "vpg_baseline.py",
     "rows.append((obs_row, next_obs_row,", "rows.append((obs_row, observation.copy(),"),
    ("vpg_baseline: V(s) and V(s') swapped", "vpg_baseline.py",
     "values, next_values = agent.value(obs), agent.value(next_obs)",
     "values, next_values = agent.value(next_obs), agent.value(obs)"),
    ("vpg_baseline: partial episodes trained on as if whole", "vpg_baseline.py",
     "while in_flight.any():", "while in_flight.any() and step < args.num_steps:"),
    ("vpg_baseline: reward-scaling return not restarted at a batch (a carry that is not zero)",
     "vpg_baseline.py", "torch.zeros(args.num_envs).to(device)",
     "torch.ones(args.num_envs).to(device)"),
    ("vpg_baseline: reward-scaling statistics take in the padding (valid not passed)",
     "vpg_baseline.py", "valid)  # every batch starts new episodes",
     ")  # every batch starts new episodes"),
    ("vpg_baseline: advantages from the raw rewards (the scaled ones dropped)", "vpg_baseline.py",
     "rewards, _ = scale_rewards(", "_, _ = scale_rewards("),
    ("vpg_baseline: the policy's step leaves out the Gaussian log-std", "vpg_baseline.py",
     'parameters = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]',
     "parameters = list(agent.actor.parameters())"),
    ("vpg_baseline: the policy's step moves the critic (A2C's joint loss on all parameters)",
     "vpg_baseline.py",
     'parameters = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]',
     "parameters = list(agent.parameters())",
     "loss = pg_loss - args.ent_coef * entropy",
     "loss = pg_loss - args.ent_coef * entropy + ((agent.value(b_obs) - b_returns)**2).mean()"),
    ("vpg_baseline: no gradient clipping", "vpg_baseline.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
    ("vpg_baseline: clipping handed the critic's parameters (the policy's step unclipped)",
     "vpg_baseline.py", "clip_grad_norm_(parameters,",
     "clip_grad_norm_(agent.critic.parameters(),"),
]
