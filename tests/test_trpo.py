"""The line search of trpo.py (check 7 of IMPLEMENTATION_NOTES.md); the machinery it shares with
npg.py (CG, Fisher-vector products, the natural step, the update's data flow) is tested on both
files in test_npg.py."""

import glob

import gymnasium as gym
import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import npg
import trpo
from conftest import read_metrics
from test_npg import COUNT_ENVS, SMOKE as NPG_SMOKE, record_count_run, tiny_policy

SMOKE = {**NPG_SMOKE, "bad_input": {
    **NPG_SMOKE["bad_input"],
    "zero backtracks": (["--backtrack-iters", "0"], "--backtrack-iters must be positive"),
    "backtrack coef of one": (["--backtrack-coef", "1"], "--backtrack-coef must be in (0, 1)"),
    "nan backtrack coef": (["--backtrack-coef", "nan"], "--backtrack-coef must be in (0, 1)"),
}}


def search_1d(surrogate, start=0.0, full_step=0.5, iters=12):
    """The line search on one parameter theta with KL(theta) = (theta - start)^2, delta = 0.01:
    steps 0.5 * 0.8^j pass the KL test from j = 8 on (0.5 * 0.8^7 = 0.105 > 0.1 >= 0.5 * 0.8^8 =
    0.084)."""
    theta = torch.nn.Parameter(torch.tensor([start], dtype=torch.float64))

    def surrogate_kl():
        return surrogate(theta.item() - start), (theta.item() - start) ** 2

    fraction, backtracks = trpo.line_search([theta], torch.tensor([full_step], dtype=torch.float64),
                                            surrogate_kl, surrogate(0.0), 0.01, 0.8, iters)
    return fraction, backtracks, theta.item() - start


def test_line_search_takes_the_first_step_inside_the_trust_region():
    """A surrogate that rises along the step: the first step with KL <= delta is taken, j = 8.
    Catches: the KL condition dropped (the full step, KL 0.25, would be taken)."""
    fraction, backtracks, moved = search_1d(lambda d: d)
    assert (fraction, backtracks) == (pytest.approx(0.8**8), 8)
    assert moved == pytest.approx(0.5 * 0.8**8) and moved**2 <= 0.01


def test_line_search_requires_the_surrogate_not_to_fall():
    """L(d) = d - 20 d^2 falls below L(0) for d > 0.05: steps 8-10 (d = 0.084, 0.067, 0.054) lower
    it, step 11 (d = 0.043) is the first to pass both tests. Catches: the improvement condition
    dropped or flipped (j = 8)."""
    fraction, backtracks, moved = search_1d(lambda d: d - 20 * d**2)
    assert backtracks == 11 and moved == pytest.approx(0.5 * 0.8**11)


def test_failed_line_search_restores_the_parameters_bit_for_bit():
    """A step along which the surrogate only falls: no j passes; theta_old comes back exactly,
    fraction 0. Catches: the parameters left at the last trial step."""
    fraction, backtracks, moved = search_1d(lambda d: -d, start=0.123456789, iters=10)
    assert (fraction, backtracks) == (0.0, 10)
    assert moved == 0.0  # theta.item() - start, in float64: the very same bits


def natural_step_problem(space):
    """A tiny float32 policy (as in training), a batch, and the full natural step of trpo.py."""
    agent, params, _ = tiny_policy(trpo, space, sharpness=1.0, dtype=torch.float32)
    torch.manual_seed(3)
    obs = torch.randn(64, 3)
    with torch.no_grad():
        old_params = agent.policy_params(obs)
        actions = agent.dist(old_params).sample()
        old_logprobs, _ = agent.log_prob_entropy(old_params, actions)
    advantages = trpo.normalize_advantages(torch.randn(64))
    policy_out = agent.policy_params(obs)
    objective = trpo.surrogate(agent.log_prob_entropy(policy_out, actions)[0], old_logprobs,
                               advantages)
    g = trpo.flat_grad(objective, params, retain_graph=True)
    fvp = trpo.fisher_vector_product(agent, policy_out, params, 0.1)
    full_step, _, _ = trpo.natural_step(trpo.conjugate_gradient(fvp, g, 10), g, fvp, 0.01)

    def surrogate_kl():
        return trpo.surrogate_and_kl(agent, obs, actions, old_logprobs, old_params, advantages)

    return params, full_step, surrogate_kl


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))],
                         ids=["categorical", "gaussian"])
def test_accepted_step_keeps_the_kl_within_delta_and_the_surrogate_up(space):
    """A real policy and a step 20 times the natural one (KL far above delta): the search
    backtracks, and the step it keeps has exact KL <= delta and a surrogate no lower; with
    delta = 1e-12 nothing passes and every parameter (the log-std included) is restored bit for
    bit."""
    params, full_step, surrogate_kl = natural_step_problem(space)
    surrogate_old, _ = surrogate_kl()
    theta_old = parameters_to_vector(params).detach().clone()
    vector_to_parameters(theta_old + 20 * full_step, params)
    assert surrogate_kl()[1] > 0.01
    vector_to_parameters(theta_old.clone(), params)
    fraction, backtracks = trpo.line_search(params, 20 * full_step, surrogate_kl, surrogate_old,
                                            0.01, 0.8, 30)
    surrogate_new, kl = surrogate_kl()
    assert 0 < fraction < 1 and backtracks > 0
    assert kl <= 0.01 and surrogate_new >= surrogate_old
    torch.testing.assert_close(parameters_to_vector(params), theta_old + fraction * 20 * full_step)

    vector_to_parameters(theta_old.clone(), params)
    before = [p.detach().clone() for p in params]
    assert trpo.line_search(params, full_step, surrogate_kl, surrogate_old, 1e-12, 0.8,
                            10) == (0.0, 10)
    assert all(torch.equal(p, q) for p, q in zip(params, before))


def test_trpo_training_respects_the_trust_region(tmp_path, monkeypatch):
    """End to end on CartPole with little damping (full steps overshoot): every logged step has
    KL <= delta and a surrogate that did not fall; a failed search logs step size 0, KL 0 and all
    backtracks; and the search does accept steps that raise the surrogate (most of them here).
    Catches: any accepted step outside the trust region; an objective whose gradient points
    downhill (every step then fails the improvement test)."""
    monkeypatch.chdir(tmp_path)
    trpo.train(trpo.Args(num_envs=2, num_steps=128, total_timesteps=2048, eval_episodes=0,
                         cg_damping=1e-3, exp_name="region"))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*__region__*"))
    rows = [m for m in read_metrics(run_dir) if "charts/SPS" in m]
    assert len(rows) == 8 and any(m["losses/backtracks"] > 0 for m in rows)
    for m in rows:
        assert m["losses/kl"] <= 0.01 and m["losses/actual_improvement"] >= 0, m
        if m["losses/step_size"] == 0:
            assert m["losses/kl"] == 0 and m["losses/backtracks"] == 10
    accepted = [m for m in rows if m["losses/step_size"] > 0]
    assert len(accepted) >= 6, rows
    assert all(m["losses/actual_improvement"] > 0 and m["losses/expected_improvement"] > 0
               for m in accepted), rows


@COUNT_ENVS
def test_the_logged_step_is_the_step_the_search_kept(env_id, tmp_path, monkeypatch):
    """A natural step made 3 times too long (its KL about 9 delta) on the toy env: the search
    backtracks j times (0 < j < backtrack_iters), and the step size, expected improvement and KL
    logged are those of the step kept, coef^j x the full step, by which the policy moved.
    Catches: the step size or gain of the full step logged for a shortened one."""
    defaults = trpo.Args()
    rows, iterations, _ = record_count_run(trpo, env_id, tmp_path, monkeypatch, step_factor=3.0)
    for m, it in zip(rows, iterations):
        step, scale, expected = it["natural_step"]
        assert 0 < m["losses/backtracks"] < defaults.backtrack_iters, m
        fraction = defaults.backtrack_coef ** m["losses/backtracks"]
        assert m["losses/step_size"] == pytest.approx(fraction * scale, rel=1e-6)
        assert m["losses/expected_improvement"] == pytest.approx(fraction * expected, rel=1e-6)
        assert m["losses/kl"] <= defaults.max_kl
        first, last = it["calls"][0], it["calls"][-1]
        torch.testing.assert_close(last["theta"] - first["theta"], fraction * step, rtol=1e-4,
                                   atol=1e-6)


def test_trpo_refuses_a_checkpoint_of_npg(tmp_path, monkeypatch, capsys):
    """npg.py and trpo.py build the same network, so only the checkpoint's "script" key tells
    their files apart: trpo.py must refuse npg.py's file in one line, which npg.py evaluates.
    Catches: a checkpoint of another script evaluated as its own."""
    monkeypatch.chdir(tmp_path)
    npg.train(npg.Args(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=1,
                       total_timesteps=64, eval_episodes=0, save_model=True, exp_name="npg"))
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "npg.pt"))
    npg.evaluate_checkpoint(npg.Args(eval_checkpoint=path, eval_episodes=1))
    assert "eval/episodic_return" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        trpo.evaluate_checkpoint(trpo.Args(eval_checkpoint=path, eval_episodes=1))
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message, message
    assert message.startswith(f"error: {path} is not a checkpoint of trpo.py"), message
    assert "saved by npg.py" in message, message


# One-line mistakes in trpo.py's line search and loop that this suite must catch (`python
# tests/mutants.py --only trpo -- tests/test_npg.py tests/test_trpo.py`; the mutants of the
# functions and data flow it shares with npg.py are listed in test_npg.py).
MUTANTS = [
    ("trpo: a checkpoint of another script evaluated as its own", "trpo.py",
     'if checkpoint.get("script") not in (None, script):', "if False:"),
    ("trpo: line search accepts a step over the KL bound", "trpo.py", "and kl <= max_kl and",
     "and"),
    ("trpo: line search without the improvement condition", "trpo.py",
     "surrogate_new >= surrogate_old):", "True):"),
    ("trpo: line search improvement condition flipped", "trpo.py",
     "surrogate_new >= surrogate_old):", "surrogate_new <= surrogate_old):"),
    ("trpo: parameters not restored after a failed search", "trpo.py",
     "    vector_to_parameters(theta_old, params)\n", "    pass\n"),
    ("trpo: the objective's sign flipped", "trpo.py",
     "objective = surrogate(new_logprobs, b_logprobs, b_advantages)",
     "objective = -surrogate(new_logprobs, b_logprobs, b_advantages)"),
    ("trpo: the logged step size not scaled by the search's fraction", "trpo.py",
     "step_size, expected_improvement = fraction * step_size, fraction * expected_improvement",
     "step_size, expected_improvement = step_size, expected_improvement"),
]
