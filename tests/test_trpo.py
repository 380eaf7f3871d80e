"""The line search of trpo.py (check 7 of IMPLEMENTATION_NOTES.md); the machinery it shares with npg.py (CG, Fisher-
vector products, the natural step) is tested on both files in test_npg.py."""

import glob

import gymnasium as gym
import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import trpo
from conftest import read_metrics
from test_npg import SMOKE as NPG_SMOKE, tiny_policy

SMOKE = {**NPG_SMOKE, "bad_input": {
    **NPG_SMOKE["bad_input"],
    "zero backtracks": (["--backtrack-iters", "0"], "--backtrack-iters must be positive"),
    "backtrack coef of one": (["--backtrack-coef", "1"], "--backtrack-coef must be in (0, 1)"),
    "nan backtrack coef": (["--backtrack-coef", "nan"], "--backtrack-coef must be in (0, 1)"),
}}


def search_1d(surrogate, start=0.0, full_step=0.5, iters=12):
    """The line search on one parameter theta with KL(theta) = (theta - start)^2, delta = 0.01: steps
    0.5 * 0.8^j pass the KL test from j = 8 on (0.5 * 0.8^7 = 0.105 > 0.1 >= 0.5 * 0.8^8 = 0.084)."""
    theta = torch.nn.Parameter(torch.tensor([start], dtype=torch.float64))
    surrogate_kl = lambda: (surrogate(theta.item() - start), (theta.item() - start) ** 2)  # noqa: E731
    fraction, backtracks = trpo.line_search([theta], torch.tensor([full_step], dtype=torch.float64), surrogate_kl,
                                            surrogate(0.0), 0.01, 0.8, iters)
    return fraction, backtracks, theta.item() - start


def test_line_search_takes_the_first_step_inside_the_trust_region():
    """A surrogate that rises along the step: the first step with KL <= delta is taken, j = 8.
    Catches: the KL condition dropped (the full step, KL 0.25, would be taken)."""
    fraction, backtracks, moved = search_1d(lambda d: d)
    assert (fraction, backtracks) == (pytest.approx(0.8**8), 8)
    assert moved == pytest.approx(0.5 * 0.8**8) and moved**2 <= 0.01


def test_line_search_requires_the_surrogate_not_to_fall():
    """L(d) = d - 20 d^2 falls below L(0) for d > 0.05: steps 8-10 (d = 0.084, 0.067, 0.054) lower it, step 11
    (d = 0.043) is the first to pass both tests. Catches: the improvement condition dropped or flipped (j = 8)."""
    fraction, backtracks, moved = search_1d(lambda d: d - 20 * d**2)
    assert backtracks == 11 and moved == pytest.approx(0.5 * 0.8**11)


def test_failed_line_search_restores_the_parameters_bit_for_bit():
    """A step along which the surrogate only falls: no j passes; theta_old comes back exactly, fraction 0.
    Catches: the parameters left at the last trial step."""
    fraction, backtracks, moved = search_1d(lambda d: -d, start=0.123456789, iters=10)
    assert (fraction, backtracks) == (0.0, 10)
    assert moved == 0.0  # theta.item() - start, in float64: the very same bits


def natural_step_problem(space):
    """A tiny float32 policy (as in training), a batch, and the full natural step of trpo.py for it."""
    agent, params, _ = tiny_policy(trpo, space, sharpness=1.0, dtype=torch.float32)
    torch.manual_seed(3)
    obs = torch.randn(64, 3)
    with torch.no_grad():
        old_params = agent.policy_params(obs)
        actions = agent.dist(old_params).sample()
        old_logprobs, _ = agent.log_prob_entropy(old_params, actions)
    advantages = trpo.normalize_advantages(torch.randn(64))
    policy_out = agent.policy_params(obs)
    g = trpo.flat_grad(trpo.surrogate(agent.log_prob_entropy(policy_out, actions)[0], old_logprobs, advantages),
                       params, retain_graph=True)
    kl_grad = trpo.kl_gradient(agent, policy_out, params)
    fvp = lambda v: trpo.fisher_vector_product(kl_grad, params, v, 0.1)  # noqa: E731
    full_step, _, _ = trpo.natural_step(trpo.conjugate_gradient(fvp, g, 10), g, fvp, 0.01)
    surrogate_kl = lambda: trpo.surrogate_and_kl(agent, obs, actions, old_logprobs, old_params, advantages)  # noqa: E731
    return params, full_step, surrogate_kl


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))], ids=["categorical", "gaussian"])
def test_accepted_step_keeps_the_kl_within_delta_and_the_surrogate_up(space):
    """A real policy and a step 20 times the natural one (KL far above delta): the search backtracks, and the step
    it keeps has exact KL <= delta and a surrogate no lower; with delta = 1e-12 nothing passes and every parameter
    (the log-std included) is restored bit for bit."""
    params, full_step, surrogate_kl = natural_step_problem(space)
    surrogate_old, _ = surrogate_kl()
    theta_old = parameters_to_vector(params).detach().clone()
    vector_to_parameters(theta_old + 20 * full_step, params)
    assert surrogate_kl()[1] > 0.01
    vector_to_parameters(theta_old.clone(), params)
    fraction, backtracks = trpo.line_search(params, 20 * full_step, surrogate_kl, surrogate_old, 0.01, 0.8, 30)
    surrogate_new, kl = surrogate_kl()
    assert 0 < fraction < 1 and backtracks > 0
    assert kl <= 0.01 and surrogate_new >= surrogate_old
    torch.testing.assert_close(parameters_to_vector(params), theta_old + fraction * 20 * full_step)

    vector_to_parameters(theta_old.clone(), params)
    before = [p.detach().clone() for p in params]
    assert trpo.line_search(params, full_step, surrogate_kl, surrogate_old, 1e-12, 0.8, 10) == (0.0, 10)
    assert all(torch.equal(p, q) for p, q in zip(params, before))


def test_trpo_training_respects_the_trust_region(tmp_path, monkeypatch):
    """End to end on CartPole with little damping (full steps overshoot): every logged step has KL <= delta and a
    surrogate that did not fall; a failed search logs step size 0, KL 0 and all backtracks."""
    monkeypatch.chdir(tmp_path)
    trpo.train(trpo.Args(num_envs=2, num_steps=128, total_timesteps=2048, eval_episodes=0, cg_damping=1e-3,
                         exp_name="region"))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*__region__*"))
    rows = [m for m in read_metrics(run_dir) if "charts/SPS" in m]
    assert len(rows) == 8 and any(m["losses/backtracks"] > 0 for m in rows)
    for m in rows:
        assert m["losses/kl"] <= 0.01 and m["losses/actual_improvement"] >= 0, m
        if m["losses/step_size"] == 0:
            assert m["losses/kl"] == 0 and m["losses/backtracks"] == 10


# One-line mistakes in trpo.py's line search that this suite must catch (`python tests/mutants.py --only trpo
# tests/test_trpo.py tests/test_npg.py`; the shared functions' mutants are listed in test_npg.py).
MUTANTS = [
    ("trpo: the rollout takes the argmax instead of sampling", "trpo.py",
     "return (out + rng.gumbel(size=out.shape)).argmax(-1)", "return out.argmax(-1)"),
    ("trpo: a checkpoint of another script evaluated as its own", "trpo.py",
     'if checkpoint.get("script") not in (None, os.path.basename(__file__)):', "if False:"),
    ("trpo: line search accepts a step over the KL bound", "trpo.py", "and kl <= max_kl and", "and"),
    ("trpo: line search without the improvement condition", "trpo.py", "and surrogate_new >= surrogate_old:", ":"),
    ("trpo: line search improvement condition flipped", "trpo.py", "and surrogate_new >= surrogate_old:",
     "and surrogate_new <= surrogate_old:"),
    ("trpo: parameters not restored after a failed search", "trpo.py", "    vector_to_parameters(theta_old, params)\n",
     "    pass\n"),
]
