"""The natural-gradient machinery of npg.py (checks 5-7 of IMPLEMENTATION_NOTES.md) and the data
flow of its update. trpo.py carries its own copy of the same functions (single-file principle):
every math and data-flow test here runs on both files."""

import glob

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal
from torch.nn.utils import parameters_to_vector

import npg
import trpo
from conftest import read_metrics

SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, every iteration's keys, bad input
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2",
             "--update-epochs", "2", "--total-timesteps", "128", "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss",
             "losses/entropy", "losses/kl", "losses/step_size", "losses/backtracks",
             "losses/expected_improvement", "losses/actual_improvement",
             "losses/explained_variance"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"],
                                   "--total-timesteps 50 is less than a batch (64)"),
        "zero rollout": (["--num-steps", "0"], "--num-steps must be positive"),
        "rollout too big for memory": (["--num-steps", str(10**16),
                                        "--total-timesteps", str(10**17)],
                                       "does not fit in memory"),
        "minibatches do not divide": (["--num-minibatches", "3"],
                                      "--num-minibatches 3 does not divide the batch of 64"),
        "batch of one": (["--num-envs", "1", "--num-steps", "1", "--num-minibatches", "1",
                          "--total-timesteps", "1"],
                         "(mini)batches of 1 sample: advantage normalisation needs 2 or more"),
        "zero critic epochs": (["--update-epochs", "0"], "--update-epochs must be positive"),
        "zero max kl": (["--max-kl", "0"], "--max-kl must be positive"),
        "nan max kl": (["--max-kl", "nan"], "--max-kl must be positive"),
        "zero cg iterations": (["--cg-iters", "0"], "--cg-iters must be positive"),
        "negative damping": (["--cg-damping", "-0.1"], "--cg-damping must be >= 0"),
        # the critic's loss, checked in the iteration it diverges (not the policy's, one later)
        "diverging critic": (["--learning-rate", "1e30"],
                             "error: the update became non-finite at step 64 (value"),
    },
}

MODULES = pytest.mark.parametrize("module", [npg, trpo], ids=["npg", "trpo"])
SPACES = pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))],
                                 ids=["categorical", "gaussian"])

# toy/CountTerminating-v0 (observation = steps taken, reward 1, terminated after 3 steps) with a
# Gaussian policy: the same returns, Box actions.
BOX_COUNT = "npg-tests/CountTerminatingBox-v0"
if BOX_COUNT not in gym.registry:
    gym.register(BOX_COUNT, entry_point="tests.toy_envs:CountEnv", max_episode_steps=5,
                 kwargs={"terminate_at": 3,
                         "action_space": gym.spaces.Box(-1.0, 1.0, (1,), np.float32)})
COUNT_ENVS = pytest.mark.parametrize("env_id", ["tests.toy_envs:toy/CountTerminating-v0",
                                                BOX_COUNT], ids=["categorical", "gaussian"])


def policy_parameters(agent) -> list:
    """What the policy's step must move: every parameter of the agent but the critic's, the
    Gaussian's log-std included, in the order of agent.parameters() (the flat vectors' order)."""
    critic = {id(p) for p in agent.critic.parameters()}
    params = [p for p in agent.parameters() if id(p) not in critic]
    assert len(params) == len([*agent.actor.parameters()]) + agent.continuous
    return params


def log_std_part(agent, vector: torch.Tensor) -> torch.Tensor:
    """The log-std's entries of a vector over policy_parameters(agent)."""
    offset = 0
    for p in policy_parameters(agent):
        if p is agent.actor_logstd:
            return vector[offset: offset + p.numel()]
        offset += p.numel()
    raise AssertionError("no log-std")


def tiny_policy(module, space, sharpness=30.0, dtype=torch.float64):
    """An agent of the module, its policy parameters (with the log-std) and 6 observations."""
    torch.manual_seed(0)
    agent = module.Agent(3, space, module.Args(norm_obs=False)).to(dtype)
    with torch.no_grad():  # a policy away from uniform, a log-std away from 0
        agent.actor[-1].weight.mul_(sharpness)
        if agent.continuous:
            agent.actor_logstd.copy_(torch.tensor([0.3, -0.5]))
    return agent, policy_parameters(agent), torch.randn(6, 3, dtype=dtype)


def explicit_fisher(agent, params, obs) -> torch.Tensor:
    """F = mean_s J_s^T M_s J_s, with J_s the Jacobian of the distribution's parameters at s and
    M_s the Fisher matrix of the distribution in those parameters, written out: diag(p) - p p^T
    for softmax logits; diag(1 / sigma^2) for a Gaussian mean and 2 for each log-std. No KL and no
    double backprop involved."""
    out = agent.policy_params(obs)
    rows = []
    for o in out.reshape(-1):
        grads = torch.autograd.grad(o, params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, params)]))
    J = torch.stack(rows).reshape(out.shape[0], out.shape[1], -1)
    with torch.no_grad():
        if agent.continuous:
            mean, logstd = out.chunk(2, -1)
            M = torch.diag_embed(torch.cat([torch.exp(-2 * logstd),
                                            torch.full_like(logstd, 2.0)], -1))
        else:
            p = out.softmax(-1)
            M = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("bkp,bkl,blq->pq", J, M, J) / out.shape[0]


def kl_by_hand(continuous: bool, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """KL(pi_old(.|s) || pi_new(.|s)) per row, from the distributions' parameters, written out:
    sum p_old log(p_old / p_new) for logits; for diagonal Gaussians (mean, log-std) the sum over
    dimensions of log(s1 / s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2."""
    if continuous:
        (m0, l0), (m1, l1) = old.chunk(2, -1), new.chunk(2, -1)
        return (l1 - l0 + (torch.exp(2 * l0) + (m0 - m1) ** 2) / (2 * torch.exp(2 * l1))
                - 0.5).sum(-1)
    p0 = torch.exp(old) / torch.exp(old).sum(-1, keepdim=True)
    p1 = torch.exp(new) / torch.exp(new).sum(-1, keepdim=True)
    return (p0 * (torch.log(p0) - torch.log(p1))).sum(-1)


def log_prob_by_torch(continuous: bool, params: torch.Tensor, actions: torch.Tensor):
    """log pi(a|s) from torch.distributions, built here from the parameters (not agent.dist)."""
    if continuous:
        mean, logstd = params.chunk(2, -1)
        return Normal(mean, logstd.exp()).log_prob(actions).sum(-1)
    return Categorical(logits=params).log_prob(actions)


@MODULES
def test_conjugate_gradient_matches_solve(module):
    """CG on a random SPD matrix (float64) reaches torch.linalg.solve in n iterations; with fewer
    it still lowers the residual. Catches: a wrong sign in the residual or direction update, alpha
    or beta inverted."""
    torch.manual_seed(0)
    a = torch.randn(12, 12, dtype=torch.float64)
    F = a @ a.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, dtype=torch.float64)
    x = module.conjugate_gradient(lambda v: F @ v, b, iters=12)
    torch.testing.assert_close(x, torch.linalg.solve(F, b), rtol=1e-8, atol=1e-8)
    residuals = [(F @ module.conjugate_gradient(lambda v: F @ v, b, iters=k) - b).norm()
                 for k in (1, 4, 8)]
    assert residuals[0] < b.norm() and residuals[2] < residuals[1] < residuals[0]
    zero = torch.zeros(12, dtype=torch.float64)  # the residual test stops at once: x0 = 0
    assert torch.equal(module.conjugate_gradient(lambda v: F @ v, zero, 5), zero)


@MODULES
def test_conjugate_gradient_stops_where_there_is_no_curvature(module):
    """F p = 0 (a singular Fisher with --cg-damping 0) or p^T F p < 0 (round-off): CG keeps the x
    it has instead of dividing by zero or stepping uphill. Catches: no curvature guard (x is then
    inf or NaN, or points along -b)."""
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    assert torch.equal(module.conjugate_gradient(lambda v: 0 * v, b, 5), zero)
    assert torch.equal(module.conjugate_gradient(lambda v: -v, b, 5), zero)
    # semidefinite with b in its range: CG solves it in the range, as it would a Fisher without
    # damping
    F = torch.diag(torch.tensor([2.0, 0.0, 4.0], dtype=torch.float64))
    x = module.conjugate_gradient(lambda v: F @ v, torch.tensor([1.0, 0.0, 2.0],
                                                                dtype=torch.float64), 5)
    torch.testing.assert_close(x, torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))


@MODULES
@SPACES
def test_fisher_vector_product_matches_the_explicit_fisher(module, space):
    """fisher_vector_product(agent, policy_out, params, damping), a double backprop of the mean KL
    to the detached policy, gives v -> (F + damping I) v with F the Fisher matrix written out, for
    any v and with any damping. Catches: the old distribution not detached (the KL is then
    identically 0 and F v = 0), damping dropped, a KL summed over the batch."""
    agent, params, obs = tiny_policy(module, space)
    F = explicit_fisher(agent, params, obs)
    assert torch.linalg.matrix_norm(F) > 1e-3  # a Fisher matrix worth comparing
    torch.manual_seed(1)
    for damping in (0.1, 0.0):
        fvp = module.fisher_vector_product(agent, agent.policy_params(obs), params, damping)
        for _ in range(3):  # the closure can be called again and again (CG does)
            v = torch.randn(F.shape[0], dtype=torch.float64)
            torch.testing.assert_close(fvp(v), F @ v + damping * v)


@MODULES
@SPACES
def test_kl_gradient_is_zero_at_theta_old(module, space):
    """KL(pi_old || pi_theta) with pi_old a detached copy of the current policy is 0 and minimal
    at theta_old: its gradient vanishes there, so the Hessian (the Fisher matrix) is the leading
    term; away from theta_old the same KL has a gradient (the test is not vacuous). Catches: a KL
    measured against a policy other than the current one."""
    agent, params, obs = tiny_policy(module, space)
    policy_out = agent.policy_params(obs)
    kl = module.mean_kl(agent, policy_out.detach(), policy_out)
    kl_grad = module.flat_grad(kl, params)
    assert kl.item() == 0
    assert kl_grad.shape == parameters_to_vector(params).shape
    torch.testing.assert_close(kl_grad, torch.zeros_like(kl_grad), rtol=0, atol=1e-12)
    with torch.no_grad():  # theta moved away from where pi_old was stored
        old = policy_out.detach()
        bias = agent.actor[-1].bias  # not a constant: softmax ignores one
        bias.add_(torch.linspace(-0.3, 0.3, len(bias), dtype=bias.dtype))
        if agent.continuous:
            agent.actor_logstd.add_(0.2)
    moved = module.flat_grad(module.mean_kl(agent, old, agent.policy_params(obs)), params)
    assert moved.norm() > 1e-3


@MODULES
@SPACES
def test_surrogate_and_kl_measure_from_the_stored_pi_old(module, space):
    """After a large change of the policy (both KL directions differ by more than 5 %), L and the
    KL reported are E[pi_theta / pi_old A] and KLbar(pi_old || pi_theta) computed by hand from the
    stored pi_old. Catches: the KL's direction reversed (in mean_kl or at its call), the KL of the
    current policy to itself, the ratio inverted."""
    agent, params, _ = tiny_policy(module, space, sharpness=1.0)
    torch.manual_seed(4)
    obs = torch.randn(32, 3, dtype=torch.float64)
    with torch.no_grad():
        old_params = agent.policy_params(obs)
        actions = agent.dist(old_params).sample()
        old_logprobs = log_prob_by_torch(agent.continuous, old_params, actions)
        agent.actor[-1].weight.mul_(500.0)
        if agent.continuous:
            agent.actor_logstd.add_(torch.tensor([0.6, -0.4], dtype=torch.float64))
        new_params = agent.policy_params(obs)
    advantages = torch.randn(32, dtype=torch.float64)
    surrogate, kl = module.surrogate_and_kl(agent, obs, actions, old_logprobs, old_params,
                                            advantages)
    expected_kl = kl_by_hand(agent.continuous, old_params, new_params).mean().item()
    reverse_kl = kl_by_hand(agent.continuous, new_params, old_params).mean().item()
    assert abs(reverse_kl - expected_kl) > 0.05 * expected_kl > 0  # the direction shows
    assert kl == pytest.approx(expected_kl, rel=1e-9)
    ratio = torch.exp(log_prob_by_torch(agent.continuous, new_params, actions) - old_logprobs)
    assert surrogate == pytest.approx((ratio * advantages).mean().item(), rel=1e-9)


@MODULES
def test_natural_step_puts_the_quadratic_kl_at_delta(module):
    """For any direction x (not only a CG solution, for which x^T g = x^T F x), the step s = c x
    has 1/2 s^T F s = delta, points along x, and g^T s is reported. Catches: x^T g in place of
    x^T F x; the 2 dropped."""
    torch.manual_seed(0)
    a = torch.randn(8, 8, dtype=torch.float64)
    F = a @ a.T + torch.eye(8, dtype=torch.float64)
    x, g = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    s, scale, expected = module.natural_step(x, g, lambda v: F @ v, 0.01)
    assert 0.5 * s @ F @ s == pytest.approx(0.01, rel=1e-9)
    torch.testing.assert_close(s, scale * x)
    assert scale > 0 and expected == pytest.approx((g @ s).item(), rel=1e-9)
    zero = torch.zeros(8, dtype=torch.float64)  # g = 0: no step
    step, scale, expected = module.natural_step(zero, g, lambda v: F @ v, 0.01)
    assert torch.equal(step, zero) and scale == 0 and expected == 0


@SPACES
def test_surrogate_is_importance_sampled(space):
    """L = mean(pi_theta / pi_old A) against numbers computed by hand; at theta_old, mean(A)."""
    new, old = torch.log(torch.tensor([0.2, 0.5, 0.3])), torch.log(torch.tensor([0.4, 0.25, 0.3]))
    adv = torch.tensor([1.0, -2.0, 3.0])
    assert trpo.surrogate(new, old, adv).item() == pytest.approx((0.5 * 1 - 2 * 2 + 1 * 3) / 3)
    assert npg.surrogate(old, old, adv).item() == pytest.approx(adv.mean().item())


def train_rows(tmp_path, monkeypatch, module, name, **overrides) -> list[dict]:
    """Train in-process on a small CartPole budget; returns the iteration rows of metrics.jsonl."""
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=128, total_timesteps=1024, eval_episodes=0,
                    exp_name=name)
    module.train(module.Args(**{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return [m for m in read_metrics(run_dir) if "charts/SPS" in m]


@MODULES
@SPACES
def test_natural_step_has_exact_kl_close_to_delta(module, space):
    """The whole step on a tiny policy (float64): g, F by double backprop, CG, the scale; the exact
    mean KL after the step is delta within 5 % when delta is small and the damping tiny (the
    quadratic model is then exact), and the surrogate rises by about g^T s. Catches: the 2
    dropped, x^T g with a damped F, a non-detached old policy."""
    agent, params, _ = tiny_policy(module, space, sharpness=1.0)
    torch.manual_seed(2)
    obs = torch.randn(64, 3, dtype=torch.float64)
    with torch.no_grad():
        old_params = agent.policy_params(obs)
        actions = agent.dist(old_params).sample()
        old_logprobs, _ = agent.log_prob_entropy(old_params, actions)
    advantages = torch.randn(64, dtype=torch.float64)
    policy_out = agent.policy_params(obs)
    objective = (agent.log_prob_entropy(policy_out, actions)[0] * advantages).mean()
    g = module.flat_grad(objective, params, retain_graph=True)
    fvp = module.fisher_vector_product(agent, policy_out, params, 1e-8)
    step, scale, expected = module.natural_step(module.conjugate_gradient(fvp, g, 10), g, fvp,
                                                1e-4)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(parameters_to_vector(params) + step, params)
    surrogate, kl = module.surrogate_and_kl(agent, obs, actions, old_logprobs, old_params,
                                            advantages)
    assert kl == pytest.approx(1e-4, rel=0.05)
    assert surrogate - advantages.mean().item() == pytest.approx(expected, rel=0.05)
    assert expected > 0


def test_npg_training_steps_land_near_delta(tmp_path, monkeypatch):
    """End to end on CartPole with the defaults: every step's exact KL is near delta (damping 0.1
    and curvature keep it a little under) and the surrogate rises by about g^T s. Catches: the step
    applied with the wrong sign or not at all, the objective's sign flipped, the KL logged against
    the wrong policy."""
    rows = train_rows(tmp_path, monkeypatch, npg, "npg_kl", max_kl=0.01)
    assert len(rows) == 4
    for m in rows:
        assert 0.004 < m["losses/kl"] < 0.0125, m
        assert m["losses/step_size"] > 0 and m["losses/backtracks"] == 0
        ratio = m["losses/actual_improvement"] / m["losses/expected_improvement"]
        assert 0.5 < ratio < 1.5, m


def record_count_run(module, env_id, tmp_path, monkeypatch, step_factor=1.0) -> tuple:
    """Trains two iterations on a CountTerminating toy env (16 envs x 3 steps: every rollout is
    one whole 3-step episode per env; gamma 0.9, lambda 1, no normalisation), recording through
    wrappers and hooks what the update sees. Returns the iteration rows of metrics.jsonl, per
    iteration a dict (obs and V_old(obs) as the critic computed them before the update; the
    critic's fit, (inputs, predictions) and targets per minibatch; g as given to CG; the natural
    step; each call of surrogate_and_kl: its arguments, the policy's and the critic's parameters),
    and the agent. step_factor multiplies the natural step (and its scale and gain)."""
    iterations, agents = [], []

    class RecordingAgent(module.Agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.critic.register_forward_hook(self.record_critic)
            agents.append(self)

        def record_critic(self, _, inputs, output):
            if inputs[0].dim() == 3:  # V(obs), then V(next_obs), of a new rollout
                if not iterations or "fit" in iterations[-1]:
                    iterations.append({"obs": inputs[0].detach().clone(),
                                       "values": output.detach().squeeze(-1).clone()})
            else:  # the fit's minibatches
                iterations[-1].setdefault("fit", []).append(
                    (inputs[0].detach().clone(), output.detach().squeeze(-1).clone()))

    def value_loss(values, returns, *args, **kwargs):
        iterations[-1].setdefault("targets", []).append(returns.detach().clone())
        return original["value_loss"](values, returns, *args, **kwargs)

    def conjugate_gradient(fvp, b, *args, **kwargs):
        iterations[-1]["g"] = b.detach().clone()
        return original["conjugate_gradient"](fvp, b, *args, **kwargs)

    def natural_step(*args, **kwargs):
        step, scale, expected = original["natural_step"](*args, **kwargs)
        result = step_factor * step, step_factor * scale, step_factor * expected
        iterations[-1]["natural_step"] = result
        return result

    def surrogate_and_kl(agent, obs, actions, old_logprobs, old_params, advantages):
        iterations[-1].setdefault("calls", []).append({
            "obs": obs.clone(), "actions": actions.clone(), "old_params": old_params.clone(),
            "advantages": advantages.clone(),
            "theta": parameters_to_vector(policy_parameters(agent)).detach().clone(),
            "critic": parameters_to_vector(agent.critic.parameters()).detach().clone()})
        return original["surrogate_and_kl"](agent, obs, actions, old_logprobs, old_params,
                                            advantages)

    original = {name: getattr(module, name) for name in
                ("value_loss", "conjugate_gradient", "natural_step", "surrogate_and_kl")}
    monkeypatch.setattr(module, "Agent", RecordingAgent)
    for name, wrapper in [("value_loss", value_loss), ("conjugate_gradient", conjugate_gradient),
                          ("natural_step", natural_step), ("surrogate_and_kl", surrogate_and_kl)]:
        monkeypatch.setattr(module, name, wrapper)
    rows = train_rows(tmp_path, monkeypatch, module, "count", env_id=env_id, num_envs=16,
                      num_steps=3, total_timesteps=96, gamma=0.9, gae_lambda=1.0,
                      num_minibatches=2, update_epochs=2, norm_obs=False, norm_reward=False)
    assert len(rows) == len(iterations) == 2 and len(agents) == 1
    return rows, iterations, agents[0]


RETURNS = {0.0: 1 + 0.9 + 0.81, 1.0: 1 + 0.9, 2.0: 1.0}  # G_t by the steps taken (observation)


@MODULES
@COUNT_ENVS
def test_the_critic_is_fitted_on_the_lambda_returns(module, env_id, tmp_path, monkeypatch):
    """With lambda = 1 and whole episodes ending by termination, R = A + V_old(s) is the
    discounted return G_t = 2.71, 1.9, 1 at observations 0, 1, 2: every minibatch of the fit
    regresses the critic's prediction at s on G(s), in every epoch. Catches: the critic fitted on
    the advantages (raw or standardised), rows of the inputs and targets mismatched."""
    _, iterations, _ = record_count_run(module, env_id, tmp_path, monkeypatch)
    for it in iterations:
        assert len(it["fit"]) == len(it["targets"]) == 4  # 2 epochs x 2 minibatches of 24
        for (inputs, _), targets in zip(it["fit"], it["targets"]):
            assert inputs.shape == (24, 1) and targets.shape == (24,)
            expected = torch.tensor([RETURNS[o] for o in inputs[:, 0].tolist()])
            torch.testing.assert_close(targets, expected)


@MODULES
@COUNT_ENVS
def test_g_is_the_policy_gradient_with_standardised_advantages(module, env_id, tmp_path,
                                                               monkeypatch):
    """The advantages of the step are A = G - V_old(s) (lambda 1), standardised over the batch by
    hand, and g (CG's right-hand side) is the gradient at theta_old of mean(log pi(a|s) A_std) over
    every policy parameter, the Gaussian's log-std included, computed here by autograd through
    torch.distributions. Catches: advantages not standardised (or not centred) before g, the
    log-std left out of the step's parameters, A from V after the fit."""
    _, iterations, agent = record_count_run(module, env_id, tmp_path, monkeypatch)
    for it in iterations:
        first = it["calls"][0]  # L(theta_old), evaluated before the step
        obs = it["obs"].flatten(0, 1)
        torch.testing.assert_close(first["obs"], obs, rtol=0, atol=0)
        advantages = (torch.tensor([RETURNS[o] for o in obs[:, 0].tolist()], dtype=torch.float64)
                      - it["values"].flatten().double())
        standardised = (advantages - advantages.mean()) / advantages.std()
        torch.testing.assert_close(first["advantages"].double(), standardised, rtol=1e-4,
                                   atol=1e-4)
        # g by autograd at theta_old, with the update's advantages
        with torch.no_grad():
            saved = parameters_to_vector(policy_parameters(agent))
            torch.nn.utils.vector_to_parameters(first["theta"], policy_parameters(agent))
        params = agent.policy_params(obs)
        log_probs = log_prob_by_torch(agent.continuous, params, first["actions"])
        g = torch.autograd.grad((log_probs * first["advantages"]).mean(),
                                policy_parameters(agent))
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(saved, policy_parameters(agent))
        g = torch.cat([x.reshape(-1) for x in g])
        assert it["g"].shape == g.shape
        torch.testing.assert_close(it["g"], g, rtol=1e-4, atol=1e-6)


@MODULES
@COUNT_ENVS
def test_the_step_moves_the_policy_with_its_log_std_and_not_the_critic(module, env_id, tmp_path,
                                                                       monkeypatch):
    """Between theta_old (the first surrogate evaluation) and the parameters the iteration ends
    with (the last), the policy's parameters, the Gaussian's log-std included, moved by
    (logged step size / natural scale) x the natural step, with a non-zero log-std part, and the
    critic did not move (it is fitted after the step). Catches: the log-std left out of the step,
    the critic in the step, the step applied with the wrong sign."""
    rows, iterations, agent = record_count_run(module, env_id, tmp_path, monkeypatch)
    for m, it in zip(rows, iterations):
        first, last = it["calls"][0], it["calls"][-1]
        assert all(torch.equal(call["critic"], first["critic"]) for call in it["calls"])
        step, scale, _ = it["natural_step"]
        assert step.shape == first["theta"].shape and scale > 0
        torch.testing.assert_close(last["theta"] - first["theta"],
                                   m["losses/step_size"] / scale * step, rtol=1e-4, atol=1e-6)
        if agent.continuous:
            assert log_std_part(agent, step).abs().min() > 1e-4  # the log-std's share
    assert rows[0]["losses/step_size"] > 0  # a step was taken


@MODULES
@COUNT_ENVS
def test_the_logged_kl_and_improvement_are_measured_from_the_stored_pi_old(module, env_id,
                                                                          tmp_path, monkeypatch):
    """The stored pi_old is the policy at theta_old on the batch's observations, and the logged KL
    and improvement are KLbar(pi_old || pi_theta) and L(theta) - L(theta_old) at the parameters the
    iteration ends with, computed here by hand. Catches: the KL's direction reversed, the KL of the
    policy to itself, pi_old taken after the step."""
    rows, iterations, agent = record_count_run(module, env_id, tmp_path, monkeypatch)
    with torch.no_grad():
        for m, it in zip(rows, iterations):
            first, last = it["calls"][0], it["calls"][-1]
            torch.nn.utils.vector_to_parameters(first["theta"], policy_parameters(agent))
            old = agent.policy_params(first["obs"]).double()
            torch.testing.assert_close(first["old_params"].double(), old, rtol=1e-5, atol=1e-6)
            torch.nn.utils.vector_to_parameters(last["theta"], policy_parameters(agent))
            new = agent.policy_params(first["obs"]).double()
            kl = kl_by_hand(agent.continuous, old, new).mean().item()
            assert m["losses/kl"] == pytest.approx(kl, rel=1e-3, abs=1e-7)
            log_ratio = (log_prob_by_torch(agent.continuous, new, first["actions"])
                         - log_prob_by_torch(agent.continuous, old, first["actions"]))
            improvement = ((log_ratio.exp() - 1) * first["advantages"].double()).mean().item()
            assert m["losses/actual_improvement"] == pytest.approx(improvement, rel=1e-2,
                                                                   abs=1e-6)
    assert rows[0]["losses/kl"] > 1e-3  # a step worth measuring


@MODULES
@COUNT_ENVS
def test_the_rollout_samples_its_actions(module, env_id, tmp_path, monkeypatch):
    """The 16 envs are at the same observation at each step of a rollout, with a policy near
    uniform (categorical) or of std about 1 (Gaussian): the actions drawn there differ (a
    categorical draws both actions). Catches: the rollout taking the argmax (or the mean)."""
    _, iterations, agent = record_count_run(module, env_id, tmp_path, monkeypatch)
    for it in iterations:
        actions = it["calls"][0]["actions"].reshape(3, 16, -1)  # (T, N, ...)
        for step in range(3):
            assert len(torch.unique(actions[step], dim=0)) == (16 if agent.continuous else 2)


@MODULES
def test_the_critic_is_fitted_on_the_inputs_it_predicts_from(tmp_path, monkeypatch, module):
    """The critic's regression normalises the batch once and feeds the critic directly: its inputs
    must be the rows V(s) saw when the advantages were computed (the same observations, normalised
    with the same statistics), in every iteration, also after the statistics have moved. Pendulum
    normalises its observations by default. Catches: the regression on raw observations, or on
    observations normalised with other statistics."""
    inputs, agents = [], []

    class RecordingAgent(module.Agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.critic.register_forward_pre_hook(
                lambda _, x: inputs.append(x[0].detach().clone()))
            agents.append(self)

    monkeypatch.setattr(module, "Agent", RecordingAgent)
    train_rows(tmp_path, monkeypatch, module, "critic_inputs", env_id="Pendulum-v1", num_envs=1,
               num_steps=64, total_timesteps=192, num_minibatches=2, update_epochs=1)
    # per iteration: V(obs) and V(next_obs) as (T, N, d), then the fit's minibatches as (64 / 2, d)
    assert [tuple(x.shape) for x in inputs] == [(64, 1, 3), (64, 1, 3), (32, 3), (32, 3)] * 3
    for iteration in range(3):
        seen = inputs[4 * iteration]
        fitted = torch.cat(inputs[4 * iteration + 2: 4 * iteration + 4])
        torch.testing.assert_close(fitted.flatten().sort().values, seen.flatten().sort().values,
                                   rtol=0, atol=0)
    norm = agents[0].obs_norm  # the statistics moved after each iteration: the inputs differ
    assert norm.count > 128 and (norm.mean.abs() > 0.05).any()
    assert ((norm.var - 1).abs() > 0.05).any()


def train_error(module, tmp_path, monkeypatch, **overrides) -> str:
    """Trains SMOKE's tiny CartPole run in-process; returns the message it exits with."""
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2,
                    total_timesteps=128, eval_episodes=0)
    with pytest.raises(SystemExit) as exited:
        module.train(module.Args(**{**settings, **overrides}))
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message, message
    return message


def test_a_non_finite_natural_step_is_one_line(tmp_path, monkeypatch):
    """NPG has no line search to refuse a bad step: a step that makes the policy non-finite ends the
    run in the iteration it is taken, with a one-line error naming the KL and the surrogate, not a
    NaN loss one iteration later blamed on the policy."""

    def bad_step(x, g, fvp, max_kl):
        return torch.full_like(x, float("nan")), float("nan"), float("nan")

    monkeypatch.setattr(npg, "natural_step", bad_step)
    message = train_error(npg, tmp_path, monkeypatch)
    assert message.startswith("error: the update became non-finite at step 64 (kl nan, "
                              "surrogate nan)"), message


@MODULES
def test_a_diverging_critic_is_one_line(module, tmp_path, monkeypatch):
    """A critic's learning rate of 1e30 makes the value loss overflow in the first iteration: the
    run ends there naming the value loss, not one iteration later with NaN advantages blamed on the
    policy. Catches: the critic's loss not checked."""
    message = train_error(module, tmp_path, monkeypatch, learning_rate=1e30)
    assert message.startswith("error: the update became non-finite at step 64 (value "), message


# One-line mistakes in npg.py and trpo.py that this suite must catch
# (`python tests/mutants.py --only npg -- tests/test_npg.py tests/test_trpo.py`):
# (name, file, exact text, its replacement).
ACTOR_PARAMS = ("actor_params = [p for name, p in agent.named_parameters() "
                'if not name.startswith("critic.")]')
MUTANTS = [
    mutant for script in ("npg", "trpo") for mutant in [
        (f"{script}: old distribution not detached in the KL", f"{script}.py",
         "mean_kl(agent, policy_out.detach(), policy_out)",
         "mean_kl(agent, policy_out, policy_out)"),
        (f"{script}: damping dropped", f"{script}.py", "retain_graph=True) + damping * v",
         "retain_graph=True)"),
        (f"{script}: step scale with x^T g", f"{script}.py", "x_F_x = x @ fvp(x)", "x_F_x = x @ g"),
        (f"{script}: step scale without the 2", f"{script}.py", "torch.sqrt(2 * max_kl / x_F_x)",
         "torch.sqrt(max_kl / x_F_x)"),
        (f"{script}: CG residual update sign", f"{script}.py", "r -= alpha * F_p",
         "r += alpha * F_p"),
        (f"{script}: CG direction with beta inverted", f"{script}.py",
         "p = r + (r_dot_r / previous) * p", "p = r + (previous / r_dot_r) * p"),
        (f"{script}: CG without the curvature guard", f"{script}.py", "if p_F_p <= 0:",
         "if False:"),
        (f"{script}: critic's non-finite loss not checked", f"{script}.py",
         "run.check_finite(global_step, value=v_loss)", "None"),
        (f"{script}: the critic fitted on raw observations", f"{script}.py",
         "critic_obs, v_losses = agent.obs_norm(b_obs), []", "critic_obs, v_losses = b_obs, []"),
        # the data flow of the update
        (f"{script}: the log-std left out of the policy step", f"{script}.py", ACTOR_PARAMS,
         "actor_params = list(agent.actor.parameters())"),
        (f"{script}: the critic in the policy step", f"{script}.py", ACTOR_PARAMS,
         "actor_params = list(agent.parameters())"),
        (f"{script}: the critic fitted on the advantages", f"{script}.py",
         "returns = advantages + values", "returns = advantages"),
        (f"{script}: the critic fitted on the standardised advantages", f"{script}.py",
         "for x in (critic_obs, b_returns)", "for x in (critic_obs, b_advantages)"),
        (f"{script}: advantages not standardised before g", f"{script}.py",
         "b_advantages = normalize_advantages(b_advantages)", "b_advantages = b_advantages"),
        (f"{script}: advantages scaled but not centred", f"{script}.py",
         "return (advantages - advantages.mean()) / (advantages.std() + 1e-8)",
         "return advantages / (advantages.std() + 1e-8)"),
        (f"{script}: KL(pi_theta || pi_old) in mean_kl", f"{script}.py",
         "kl_divergence(agent.dist(old_params), agent.dist(params))",
         "kl_divergence(agent.dist(params), agent.dist(old_params))"),
        (f"{script}: the logged KL against the policy itself", f"{script}.py",
         "kl = mean_kl(agent, old_params, params)", "kl = mean_kl(agent, params, params)"),
        (f"{script}: the KL reversed at its call", f"{script}.py",
         "kl = mean_kl(agent, old_params, params)", "kl = mean_kl(agent, params, old_params)"),
        (f"{script}: the rollout takes the argmax instead of sampling", f"{script}.py",
         "return (logits + rng.gumbel(size=logits.shape)).argmax(-1)",
         "return logits.argmax(-1)"),
    ]
] + [
    ("npg: non-finite natural step not checked", "npg.py",
     "run.check_finite(global_step, kl=kl, surrogate=surrogate_new)", "None"),
    ("npg: step applied with the wrong sign", "npg.py",
     "parameters_to_vector(actor_params) + full_step",
     "parameters_to_vector(actor_params) - full_step"),
    ("npg: the objective's sign flipped", "npg.py",
     "objective = (new_logprobs * b_advantages).mean()",
     "objective = -(new_logprobs * b_advantages).mean()"),
]
