"""The natural-gradient machinery of npg.py (checks 5-7 of IMPLEMENTATION_NOTES.md). trpo.py carries its own copy of
the same functions (single-file principle): every math test here runs on both files."""

import glob

import gymnasium as gym
import pytest
import torch

import npg
import trpo
from conftest import read_metrics

SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, the keys of every iteration, bad input of its own flags
    "tiny": ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "2",
             "--total-timesteps", "128", "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss", "losses/entropy",
             "losses/kl", "losses/step_size", "losses/backtracks", "losses/expected_improvement",
             "losses/actual_improvement", "losses/explained_variance"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "50"], "less than one batch"),
        "zero rollout": (["--num-steps", "0"], "--num-steps must be positive"),
        "rollout too big for memory": (["--num-steps", str(10**16), "--total-timesteps", str(10**17)],
                                       "does not fit in memory"),
        "minibatches do not divide": (["--num-minibatches", "3"], "does not divide"),
        "batch of one": (["--num-envs", "1", "--num-steps", "1", "--num-minibatches", "1", "--total-timesteps", "1"],
                         "a batch of 1 sample"),
        "zero critic epochs": (["--update-epochs", "0"], "--update-epochs must be positive"),
        "zero max kl": (["--max-kl", "0"], "--max-kl must be positive"),
        "nan max kl": (["--max-kl", "nan"], "--max-kl must be positive"),
        "zero cg iterations": (["--cg-iters", "0"], "--cg-iters must be positive"),
        "negative damping": (["--cg-damping", "-0.1"], "--cg-damping must be >= 0"),
        "diverging critic": (["--learning-rate", "1e30"], "error: the value loss became"),
    },
}

MODULES = pytest.mark.parametrize("module", [npg, trpo], ids=["npg", "trpo"])
SPACES = pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))],
                                 ids=["categorical", "gaussian"])


def tiny_policy(module, space, sharpness=30.0, dtype=torch.float64):
    """An agent of the module, its actor parameters (with the log-std) and a batch of 6 observations."""
    torch.manual_seed(0)
    agent = module.Agent(3, space, norm_obs=False).to(dtype)
    with torch.no_grad():  # a policy away from uniform, a log-std away from 0
        agent.actor[-1].weight.mul_(sharpness)
        if agent.continuous:
            agent.actor_logstd.copy_(torch.tensor([0.3, -0.5]))
    params = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]
    return agent, params, torch.randn(6, 3, dtype=dtype)


def explicit_fisher(agent, params, obs) -> torch.Tensor:
    """F = mean_s J_s^T M_s J_s, with J_s the Jacobian of the distribution's parameters at s and M_s the Fisher
    matrix of the distribution in those parameters, written out: diag(p) - p p^T for softmax logits;
    diag(1 / sigma^2) for a Gaussian mean and 2 for each log-std. No KL and no double backprop involved."""
    out = agent.policy_params(obs)
    rows = [torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(
        torch.autograd.grad(o, params, retain_graph=True, allow_unused=True), params)]) for o in out.reshape(-1)]
    J = torch.stack(rows).reshape(out.shape[0], out.shape[1], -1)
    with torch.no_grad():
        if agent.continuous:
            mean, logstd = out.chunk(2, -1)
            M = torch.diag_embed(torch.cat([torch.exp(-2 * logstd), torch.full_like(logstd, 2.0)], -1))
        else:
            p = out.softmax(-1)
            M = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("bkp,bkl,blq->pq", J, M, J) / out.shape[0]


@MODULES
def test_conjugate_gradient_matches_solve(module):
    """CG on a random SPD matrix (float64) reaches torch.linalg.solve in n iterations; with fewer it still lowers the
    residual. Catches: a wrong sign in the residual or direction update, alpha or beta inverted."""
    torch.manual_seed(0)
    a = torch.randn(12, 12, dtype=torch.float64)
    F, b = a @ a.T + 0.5 * torch.eye(12, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    x = module.conjugate_gradient(lambda v: F @ v, b, iters=12)
    torch.testing.assert_close(x, torch.linalg.solve(F, b), rtol=1e-8, atol=1e-8)
    residuals = [(F @ module.conjugate_gradient(lambda v: F @ v, b, iters=k) - b).norm() for k in (1, 4, 8)]
    assert residuals[0] < b.norm() and residuals[2] < residuals[1] < residuals[0]
    assert torch.equal(module.conjugate_gradient(lambda v: F @ v, torch.zeros(12, dtype=torch.float64), 5),
                       torch.zeros(12, dtype=torch.float64))  # the residual test stops at once: x0 = 0


@MODULES
def test_conjugate_gradient_stops_where_there_is_no_curvature(module):
    """F p = 0 (a singular Fisher with --cg-damping 0) or p^T F p < 0 (round-off): CG keeps the x it has instead of
    dividing by zero or stepping uphill. Catches: no curvature guard (x is then inf or NaN, or points along -b)."""
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert torch.equal(module.conjugate_gradient(lambda v: 0 * v, b, 5), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(module.conjugate_gradient(lambda v: -v, b, 5), torch.zeros(3, dtype=torch.float64))
    # semidefinite with b in its range: CG solves it in the range, as it would a Fisher without damping
    F = torch.diag(torch.tensor([2.0, 0.0, 4.0], dtype=torch.float64))
    x = module.conjugate_gradient(lambda v: F @ v, torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64), 5)
    torch.testing.assert_close(x, torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))


@MODULES
@SPACES
def test_fisher_vector_product_matches_the_explicit_fisher(module, space):
    """Double backprop of the mean KL to the detached policy gives (F + damping I) v with F the Fisher matrix written
    out. Catches: the old distribution not detached (the KL is then identically 0 and F v = 0), damping dropped."""
    agent, params, obs = tiny_policy(module, space)
    F = explicit_fisher(agent, params, obs)
    assert torch.linalg.matrix_norm(F) > 1e-3  # a Fisher matrix worth comparing
    kl_grad = module.kl_gradient(agent, agent.policy_params(obs), params)
    torch.manual_seed(1)
    for _ in range(3):
        v = torch.randn(F.shape[0], dtype=torch.float64)
        torch.testing.assert_close(module.fisher_vector_product(kl_grad, params, v, 0.1), F @ v + 0.1 * v)


@MODULES
@SPACES
def test_kl_gradient_is_zero_at_theta_old(module, space):
    """KL(pi_old || pi_theta) is minimal at theta_old: its gradient vanishes there, so the Hessian (the Fisher
    matrix) is the leading term. Catches: a KL measured against a policy other than the current one."""
    agent, params, obs = tiny_policy(module, space)
    kl_grad = module.kl_gradient(agent, agent.policy_params(obs), params)
    assert kl_grad.shape == torch.nn.utils.parameters_to_vector(params).shape
    torch.testing.assert_close(kl_grad, torch.zeros_like(kl_grad), rtol=0, atol=1e-12)


@MODULES
def test_natural_step_puts_the_quadratic_kl_at_delta(module):
    """For any direction x (not only a CG solution, for which x^T g = x^T F x), the step s = c x has
    1/2 s^T F s = delta, points along x, and g^T s is reported. Catches: x^T g in place of x^T F x; the 2 dropped."""
    torch.manual_seed(0)
    a = torch.randn(8, 8, dtype=torch.float64)
    F = a @ a.T + torch.eye(8, dtype=torch.float64)
    x, g = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    s, scale, expected = module.natural_step(x, g, lambda v: F @ v, 0.01)
    assert 0.5 * s @ F @ s == pytest.approx(0.01, rel=1e-9)
    torch.testing.assert_close(s, scale * x)
    assert scale > 0 and expected == pytest.approx((g @ s).item(), rel=1e-9)
    zero, scale, expected = module.natural_step(torch.zeros(8, dtype=torch.float64), g, lambda v: F @ v, 0.01)
    assert torch.equal(zero, torch.zeros(8, dtype=torch.float64)) and scale == 0 and expected == 0  # g = 0: no step


@SPACES
def test_surrogate_is_importance_sampled(space):
    """L = mean(pi_theta / pi_old A) against numbers computed by hand; its value at theta_old is mean(A)."""
    new, old = torch.log(torch.tensor([0.2, 0.5, 0.3])), torch.log(torch.tensor([0.4, 0.25, 0.3]))
    adv = torch.tensor([1.0, -2.0, 3.0])
    assert trpo.surrogate(new, old, adv).item() == pytest.approx((0.5 * 1 - 2 * 2 + 1 * 3) / 3)
    assert npg.surrogate(old, old, adv).item() == pytest.approx(adv.mean().item())


def train_rows(tmp_path, monkeypatch, module, name, **overrides) -> list[dict]:
    """Train in-process on a small CartPole budget; returns the iteration rows of metrics.jsonl."""
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=128, total_timesteps=1024, eval_episodes=0, exp_name=name)
    module.train(module.Args(**{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return [m for m in read_metrics(run_dir) if "charts/SPS" in m]


@MODULES
@SPACES
def test_natural_step_has_exact_kl_close_to_delta(module, space):
    """The whole step on a tiny policy (float64): g, F by double backprop, CG, the scale; the exact mean KL after the
    step is delta within 5 % when delta is small and the damping tiny (the quadratic model is then exact), and the
    surrogate rises by about g^T s. Catches: the 2 dropped, x^T g with a damped F, a non-detached old policy."""
    agent, params, _ = tiny_policy(module, space, sharpness=1.0)
    torch.manual_seed(2)
    obs = torch.randn(64, 3, dtype=torch.float64)
    with torch.no_grad():
        old_params = agent.policy_params(obs)
        actions = agent.dist(old_params).sample()
        old_logprobs, _ = agent.log_prob_entropy(old_params, actions)
    advantages = torch.randn(64, dtype=torch.float64)
    policy_out = agent.policy_params(obs)
    g = module.flat_grad((agent.log_prob_entropy(policy_out, actions)[0] * advantages).mean(), params, retain_graph=True)
    kl_grad = module.kl_gradient(agent, policy_out, params)
    fvp = lambda v: module.fisher_vector_product(kl_grad, params, v, 1e-8)  # noqa: E731
    step, scale, expected = module.natural_step(module.conjugate_gradient(fvp, g, 10), g, fvp, 1e-4)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(params) + step, params)
    surrogate, kl = module.surrogate_and_kl(agent, obs, actions, old_logprobs, old_params, advantages)
    assert kl == pytest.approx(1e-4, rel=0.05)
    assert surrogate - advantages.mean().item() == pytest.approx(expected, rel=0.05) and expected > 0


def test_npg_training_steps_land_near_delta(tmp_path, monkeypatch):
    """End to end on CartPole with the defaults: every step's exact KL is near delta (damping 0.1 and curvature keep
    it a little under) and the surrogate rises by about g^T s. Catches: the step applied with the wrong sign or
    not at all, the KL logged against the wrong policy."""
    rows = train_rows(tmp_path, monkeypatch, npg, "npg_kl", max_kl=0.01)
    assert len(rows) == 4
    for m in rows:
        assert 0.004 < m["losses/kl"] < 0.0125, m
        assert m["losses/step_size"] > 0 and m["losses/backtracks"] == 0
        assert 0.5 < m["losses/actual_improvement"] / m["losses/expected_improvement"] < 1.5, m


@MODULES
def test_the_critic_is_fitted_on_the_inputs_it_predicts_from(tmp_path, monkeypatch, module):
    """The critic's regression normalises the batch once and feeds the critic directly: its inputs must be the rows
    V(s) saw when the advantages were computed (the same observations, normalised with the same statistics), in
    every iteration, also after the statistics have moved. Pendulum normalises its observations by default.
    Catches: the regression on raw observations, or on observations normalised with other statistics."""
    inputs, agents = [], []

    class RecordingAgent(module.Agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.critic.register_forward_pre_hook(lambda _, x: inputs.append(x[0].detach().clone()))
            agents.append(self)

    monkeypatch.setattr(module, "Agent", RecordingAgent)
    train_rows(tmp_path, monkeypatch, module, "critic_inputs", env_id="Pendulum-v1", num_envs=1, num_steps=64,
               total_timesteps=192, num_minibatches=2, update_epochs=1)
    # per iteration: V(obs) and V(next_obs) as (T, N, d), then the fit's minibatches as (64 / 2, d)
    assert [tuple(x.shape) for x in inputs] == [(64, 1, 3), (64, 1, 3), (32, 3), (32, 3)] * 3
    for iteration in range(3):
        seen, fitted = inputs[4 * iteration], torch.cat(inputs[4 * iteration + 2: 4 * iteration + 4])
        torch.testing.assert_close(fitted.flatten().sort().values, seen.flatten().sort().values, rtol=0, atol=0)
    norm = agents[0].obs_norm  # the statistics moved after each iteration: normalised and raw inputs differ
    assert norm.count > 128 and (norm.mean.abs() > 0.05).any() and ((norm.var - 1).abs() > 0.05).any()


def test_a_non_finite_natural_step_is_one_line(tmp_path, monkeypatch):
    """NPG has no line search to refuse a bad step: a step that makes the policy non-finite ends the run with a
    one-line error naming the step, not a NaN loss one iteration later blamed on the policy."""
    from test_scripts import cli, tiny

    def bad_step(x, g, fvp, max_kl):
        return torch.full_like(x, float("nan")), float("nan"), float("nan")

    monkeypatch.setattr(npg, "natural_step", bad_step)
    monkeypatch.chdir(tmp_path)
    exited_with = cli("npg.py", *tiny("npg.py"), "--eval-episodes", "0")
    assert isinstance(exited_with, str) and exited_with.startswith("error: the natural step gave KL nan")


# One-line mistakes in npg.py and trpo.py's shared functions that this suite must catch
# (`python tests/mutants.py --only npg tests/test_npg.py`): (name, file, exact text, its replacement).
MUTANTS = [
    mutant for script in ("npg", "trpo") for mutant in [
        (f"{script}: old distribution not detached in the KL", f"{script}.py",
         "agent.dist(policy_out.detach())", "agent.dist(policy_out)"),
        (f"{script}: damping dropped", f"{script}.py", "retain_graph=True) + damping * v", "retain_graph=True)"),
        (f"{script}: step scale with x^T g", f"{script}.py", "x_F_x = x @ fvp(x)", "x_F_x = x @ g"),
        (f"{script}: step scale without the 2", f"{script}.py", "torch.sqrt(2 * max_kl / x_F_x)",
         "torch.sqrt(max_kl / x_F_x)"),
        (f"{script}: CG residual update sign", f"{script}.py", "r -= alpha * F_p", "r += alpha * F_p"),
        (f"{script}: CG direction with beta inverted", f"{script}.py", "p = r + (r_dot_r / previous) * p",
         "p = r + (previous / r_dot_r) * p"),
        (f"{script}: CG without the curvature guard", f"{script}.py", "if p_F_p <= 0:", "if False:"),
        (f"{script}: critic's non-finite loss not checked", f"{script}.py", "if not torch.isfinite(v_loss):",
         "if False:"),
        (f"{script}: the critic fitted on raw observations", f"{script}.py",
         "critic_obs, v_losses = agent.obs_norm(b_obs), []", "critic_obs, v_losses = b_obs, []"),
    ]
] + [
    ("npg: non-finite natural step not checked", "npg.py", "if not (math.isfinite(kl) and math.isfinite(surrogate_new)):",
     "if False:"),
    ("npg: step applied with the wrong sign", "npg.py", "parameters_to_vector(actor_params) + full_step",
     "parameters_to_vector(actor_params) - full_step"),
    ("npg: the rollout samples from unnormalised observations", "npg.py",
     "x = np.clip((obs - mean) * inv_std, -clip, clip)", "x = obs"),
]
