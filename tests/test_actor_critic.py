"""The math of actor_critic.py: the TD-error advantage and its target (end to end, on toy envs that
terminate, truncate, or both at once), the detached TD target, the three terms of the loss train()
assembles, the reward scaling's return carried across segments, and the shared trunk."""

import glob
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical

import actor_critic
from actor_critic import Agent, Args, policy_gradient_loss, value_loss
from conftest import read_metrics

SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, every iteration's keys, bad input
    "tiny": ["--num-envs", "2", "--num-steps", "8", "--total-timesteps", "128",
             "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss",
             "losses/entropy", "losses/kl", "losses/explained_variance"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "10"],
                                   "--total-timesteps 10 is less than a batch (16)"),
        "zero rollout": (["--num-steps", "0"], "--num-steps must be positive"),
        "rollout too big for memory": (["--num-steps", str(10**16), "--total-timesteps",
                                        str(10**17)], "does not fit in memory"),
        "negative lambda": (["--gae-lambda", "-0.1"], "--gae-lambda must be in [0, 1]"),
        "negative value coefficient": (["--vf-coef", "-1"], "--vf-coef must be >= 0"),
        "nan grad norm": (["--max-grad-norm", "nan"], "--max-grad-norm must be positive"),
        "batch of one": (["--num-envs", "1", "--num-steps", "1", "--norm-adv",
                          "--total-timesteps", "8"],
                         "(mini)batches of 1 sample: advantage normalisation needs 2 or more"),
    },
}


class RecordingAgent(Agent):
    """The script's Agent, remembering every instance, its initial weights and the policy
    parameters the loss's log-probabilities are computed from, so a test can look inside a run."""

    made = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial = {k: v.clone() for k, v in self.state_dict().items()}
        self.scored = []
        RecordingAgent.made.append(self)

    def log_prob_entropy(self, params, actions):
        self.scored.append(params.detach().clone())
        return super().log_prob_entropy(params, actions)


def train_recorded(tmp_path, monkeypatch, **settings) -> Agent:
    """Train in-process with the recording Agent; returns the trained agent."""
    RecordingAgent.made = []
    monkeypatch.setattr(actor_critic, "Agent", RecordingAgent)
    monkeypatch.chdir(tmp_path)
    actor_critic.train(Args(eval_episodes=0, **settings))
    (agent,) = RecordingAgent.made
    return agent


@pytest.mark.parametrize("env_id, ends_by, length", [("toy/Count-v0", "truncation", 5),
                                                     ("toy/CountTerminating-v0", "termination", 3),
                                                     ("toy/CountTerminatingAtLimit-v0", "both", 5)])
def test_advantage_is_the_td_error_and_the_target_bootstraps_only_at_truncation(
        env_id, ends_by, length, tmp_path, monkeypatch):
    """End to end, with the default lambda 0: every advantage the policy loss weights by is
    r + gamma (1 - terminated) V(s') - V(s) and every value target is r + gamma (1 - terminated)
    V(s'), computed here from the env's rules alone (the observation is the step count c, reward 1,
    the episode ends after `length` steps, s' = c + 1 also at the end) and the critic of that
    moment; the targets and advantages carry no gradient, the values do. Catches: the terminated
    mask dropped (a terminal step bootstrapped); done used in place of terminated (no bootstrap at
    a time limit); V(reset obs) in place of V(final obs); V(s) and V(s') swapped; the advantage
    negated; the value loss on the wrong target (A, A + V(s'), anything but A + V_old) or on a
    detached V; a TD target computed with gradient."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    gamma, num_steps, weights, seen = 0.9, 8, [], []
    real_pg, real_v = actor_critic.policy_gradient_loss, actor_critic.value_loss

    def recorded_pg(logprobs, advantages):
        weights.append(advantages)
        return real_pg(logprobs, advantages)

    def checked_v(values, returns, *rest):
        (agent,) = RecordingAgent.made
        t = len(seen) * num_steps + torch.arange(num_steps).repeat_interleave(2)  # (T, N) flat
        count = (t % length).float()
        with torch.no_grad():
            v, v_next = agent.value(count[:, None]), agent.value(count[:, None] + 1)
        bootstrap = 0.0 if ends_by != "truncation" else 1.0
        v_next = torch.where(count + 1 == length, bootstrap * v_next, v_next)
        (advantages,) = weights[len(seen):]
        assert values.requires_grad and not returns.requires_grad
        assert not advantages.requires_grad
        torch.testing.assert_close(values.detach(), v)
        torch.testing.assert_close(returns, 1 + gamma * v_next)
        torch.testing.assert_close(advantages, 1 + gamma * v_next - v)
        seen.append(ends_by)
        return real_v(values, returns, *rest)

    monkeypatch.setattr(actor_critic, "policy_gradient_loss", recorded_pg)
    monkeypatch.setattr(actor_critic, "value_loss", checked_v)
    train_recorded(tmp_path, monkeypatch, env_id=env_id, num_envs=2, num_steps=num_steps,
                   total_timesteps=48, gamma=gamma, learning_rate=1e-2)
    assert len(seen) == len(weights) == 3


@pytest.mark.parametrize("shared_network", [False, True], ids=["separate", "shared"])
def test_the_policy_term_never_trains_the_critic(shared_network, tmp_path, monkeypatch):
    """End to end on CartPole with vf_coef = 0: with separate networks the critic's weights stay
    bit for bit where they started while the actor moves; with vf_coef > 0 the critic moves too.
    Shared trunk (critic.0-3, the same modules as actor.0-3): with vf_coef = 0 the value head
    (critic.4) stays put while the policy loss trains the trunk. Catches: a TD target or advantage
    that carries gradient (computed outside no_grad, V(s') with gradient, A recomputed as R - V(s)
    in the loss), through which the policy loss trains the critic; vf_coef ignored; a value loss
    on a detached V (the critic never learns)."""
    settings = dict(num_envs=2, num_steps=8, total_timesteps=128, learning_rate=1e-2,
                    ent_coef=0.01, shared_network=shared_network)
    for vf_coef in (0.0, 0.5):
        agent = train_recorded(tmp_path, monkeypatch, vf_coef=vf_coef, exp_name=f"vf{vf_coef}",
                               **settings)
        moved = {k for k, v in agent.state_dict().items() if not torch.equal(v, agent.initial[k])}
        critic = {k for k in agent.initial if k.startswith("critic.")}
        head = {"critic.4.weight", "critic.4.bias"}
        assert any(k.startswith("actor.") for k in moved)
        if vf_coef == 0:
            assert moved & (head if shared_network else critic) == set()
            assert shared_network == ("critic.0.weight" in moved)  # the trunk learns from pi
        else:
            assert critic <= moved


def test_policy_gradient_matches_the_score_function_by_hand():
    """d/dz of -mean(A_i log softmax(z_i)[a_i]) is -A_i (onehot(a_i) - softmax(z_i)) / n, written
    out in numpy; one gradient step raises the probability of the action with a positive advantage;
    no gradient reaches the advantages (constants, even if computed with a graph). Catches: the
    sign flipped (the policy would move away from good actions), a sum in place of the mean, the
    detach removed."""
    agent = Agent(3, gym.spaces.Discrete(3), Args(norm_obs=False))
    logits = torch.tensor([[0.5, -0.2, 0.1], [0.0, 1.0, -1.0]], dtype=torch.float64,
                          requires_grad=True)
    actions = torch.tensor([0, 2])
    advantages = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    logprobs, _ = agent.log_prob_entropy(logits, actions)
    pg_loss = policy_gradient_loss(logprobs, advantages * 1.0)  # a graph back to `advantages`
    pg_loss.backward()
    assert advantages.grad is None
    z = logits.detach().numpy()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -np.array([2.0, -1.0])[:, None] * (np.eye(3)[[0, 2]] - p) / 2
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-12)
    assert pg_loss.item() == pytest.approx(-(2.0 * np.log(p[0, 0]) - 1.0 * np.log(p[1, 2])) / 2)
    stepped = (logits - 0.1 * logits.grad).softmax(-1)
    assert stepped[0, 0] > p[0, 0] and stepped[1, 2] < p[1, 2]


def test_value_loss_is_half_the_mean_squared_error():
    got = value_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item()
    assert got == pytest.approx(0.5 * (1 + 4) / 2)


def test_loss_combines_the_three_terms_with_their_signs(tmp_path, monkeypatch):
    """End to end on CartPole with vf_coef 0.5 and ent_coef 0.1: the loss train() checks and steps
    on is pg + 0.5 v - 0.1 H, each term by hand from what the script's functions receive: pg =
    -mean(log pi(a|s) A), v = 0.5 mean((V - R)^2), H the mean entropy of the categorical policy
    whose log-probabilities the loss takes (torch.distributions). Catches: the entropy bonus's sign
    flipped or left out, vf_coef ignored, a missing 0.5, the loss summed in place of averaged."""
    pg_inputs, v_inputs, checked = [], [], []
    real_pg, real_v = actor_critic.policy_gradient_loss, actor_critic.value_loss
    real_check = actor_critic.Run.check_finite

    def recorded_pg(logprobs, advantages):
        pg_inputs.append((logprobs.detach().clone(), advantages.clone()))
        return real_pg(logprobs, advantages)

    def recorded_v(values, returns, *rest):
        v_inputs.append((values.detach().clone(), returns.clone()))
        return real_v(values, returns, *rest)

    def recorded_check(self, global_step, **values):
        checked.append({k: float(v.detach()) for k, v in values.items()})
        return real_check(self, global_step, **values)

    monkeypatch.setattr(actor_critic, "policy_gradient_loss", recorded_pg)
    monkeypatch.setattr(actor_critic, "value_loss", recorded_v)
    monkeypatch.setattr(actor_critic.Run, "check_finite", recorded_check)
    agent = train_recorded(tmp_path, monkeypatch, num_envs=2, num_steps=8, total_timesteps=48,
                           vf_coef=0.5, ent_coef=0.1)
    assert len(pg_inputs) == len(v_inputs) == len(checked) == len(agent.scored) == 3
    for (logprobs, advantages), (values, returns), losses, params in zip(
            pg_inputs, v_inputs, checked, agent.scored):
        pg = -(logprobs.double() * advantages.double()).mean().item()
        v = 0.5 * ((values.double() - returns.double()) ** 2).mean().item()
        entropy = Categorical(logits=params.double()).entropy().mean().item()
        assert entropy > 0.5 and v > 1e-3  # every term counts
        assert losses["loss"] == pytest.approx(pg + 0.5 * v - 0.1 * entropy, rel=1e-5, abs=1e-6)
        assert losses["policy"] == pytest.approx(pg, rel=1e-5, abs=1e-6)
        assert losses["value"] == pytest.approx(v, rel=1e-5, abs=1e-6)


def train_cartpole(tmp_path, monkeypatch, name: str, **overrides) -> list[dict]:
    monkeypatch.chdir(tmp_path)
    settings = dict(num_envs=2, num_steps=8, total_timesteps=128, eval_episodes=0)
    actor_critic.train(Args(exp_name=name, **{**settings, **overrides}))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
    return [m for m in read_metrics(run_dir) if "charts/SPS" in m]


def test_entropy_bonus_raises_the_entropy(tmp_path, monkeypatch):
    """End to end on CartPole, 32 updates at a learning rate of 1e-2: without a bonus the policy
    grows nearly deterministic (entropy under 0.1); a large entropy coefficient keeps it near
    uniform, at the entropy log 2 (the first Adam steps move every weight by about the learning
    rate whatever the loss, so not exactly); with the bonus's sign flipped or the bonus left out
    the policy collapses."""
    settings = dict(learning_rate=1e-2, anneal_lr=False, total_timesteps=512)
    free = train_cartpole(tmp_path, monkeypatch, "free", **settings)
    bonus = train_cartpole(tmp_path, monkeypatch, "bonus", ent_coef=10.0, **settings)
    assert free[-1]["losses/entropy"] < 0.1
    assert all(m["losses/entropy"] > math.log(2) - 0.05 for m in bonus)


def test_gradient_clipping_limits_the_step(tmp_path, monkeypatch):
    """With a global gradient norm clipped to 1e-9, Adam (eps 1e-5) barely moves: the policy stays
    put (the KL of the step, logged)."""
    free = train_cartpole(tmp_path, monkeypatch, "free", learning_rate=1e-2)
    clipped = train_cartpole(tmp_path, monkeypatch, "clipped", learning_rate=1e-2,
                             max_grad_norm=1e-9)
    assert free[0]["losses/kl"] > 1e-5
    assert clipped[0]["losses/kl"] < 1e-5 * free[0]["losses/kl"]


def test_reward_scaling_return_runs_on_across_segments(tmp_path, monkeypatch):
    """The envs run on across segments, so does the discounted return behind the reward scaling:
    on CartPole (reward 1 per step, gamma 0.9) the first segment starts from a zero carry, each
    next one from the carry the previous returned, which is R = 1 + gamma + ... + gamma^j at its
    last step, j the steps since the env's episode began (by hand, across segments), or 0 where
    an episode ended there. Catches: the carry dropped (the return restarted every segment)."""
    gamma, calls = 0.9, []
    real_scale = actor_critic.scale_rewards

    def recorded_scale(rewards, dones, gamma_, running_return, return_norm, valid=None):
        scaled, carry = real_scale(rewards, dones, gamma_, running_return, return_norm, valid)
        calls.append((dones.clone(), running_return.clone(), carry.clone()))
        return scaled, carry

    monkeypatch.setattr(actor_critic, "scale_rewards", recorded_scale)
    train_cartpole(tmp_path, monkeypatch, "carry", gamma=gamma, norm_reward=True,
                   total_timesteps=160)
    assert len(calls) == 10
    j = torch.zeros(2)  # steps before the current one in each env's episode, over the whole run
    previous = torch.zeros(2)
    for dones, carry_in, carry_out in calls:
        torch.testing.assert_close(carry_in, previous)
        for t in range(len(dones)):
            last = (1 - gamma ** (j + 1)) / (1 - gamma)
            j = torch.where(dones[t], 0, j + 1)
        expected = torch.where(dones[-1], 0.0, last)
        torch.testing.assert_close(carry_out, expected)
        previous = carry_out
    assert any(carry.abs().sum() > 0 for _, carry, _ in calls)


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(2), gym.spaces.Box(-1, 1, (2,))],
                         ids=["discrete", "box"])
def test_shared_trunk_gets_both_gradients_and_each_head_only_its_own(action_space):
    """--shared-network: the trunk is critic[0:4], the very modules of actor[0:4] (fewer
    parameters than two networks); the policy loss's gradient reaches the trunk and the policy head
    (and log-std) but not the value head, the value loss's the trunk and the value head but not the
    policy head. Separate networks: the policy loss never reaches the critic. Catches: a policy
    head on a detached trunk (the trunk would learn from V alone), a trunk copied, not shared."""
    torch.manual_seed(0)
    obs = torch.randn(8, 3)
    shared, separate = (Agent(3, action_space, Args(norm_obs=True, shared_network=s))
                        for s in (True, False))
    assert all(shared.actor[i] is shared.critic[i] for i in range(4))
    assert not any(separate.actor[i] is separate.critic[i] for i in range(4))
    assert sum(p.numel() for p in shared.parameters()) < sum(
        p.numel() for p in separate.parameters())
    policy_names = {"actor.4.weight", "actor.4.bias"} | (
        {"actor_logstd"} if isinstance(action_space, gym.spaces.Box) else set())
    trunk_names = {"critic.0.weight", "critic.0.bias", "critic.2.weight", "critic.2.bias"}
    for agent in (shared, separate):
        params = agent.policy_params(obs)
        agent.zero_grad(set_to_none=True)
        logprobs, _ = agent.log_prob_entropy(params, agent.dist(params.detach()).sample())
        logprobs.mean().backward()
        reached = {name for name, p in agent.named_parameters()
                   if p.grad is not None and p.grad.abs().sum() > 0}
        if agent is shared:
            assert reached == policy_names | trunk_names
        else:
            actor = {n for n, _ in agent.named_parameters() if not n.startswith("critic.")}
            assert reached == actor
    shared.zero_grad(set_to_none=True)
    shared.value(obs).sum().backward()
    reached = {name for name, p in shared.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {n for n, _ in shared.named_parameters() if n.startswith("critic.")}


def test_shared_network_checkpoint_reloads(tmp_path, monkeypatch):
    """A --shared-network model saves and reloads as one (the flag travels with the checkpoint):
    evaluate_checkpoint builds an agent whose actor and critic share their trunk and that gives
    the trained agent's policy and values."""
    agent = train_recorded(tmp_path, monkeypatch, num_envs=2, num_steps=8, total_timesteps=64,
                           shared_network=True, save_model=True)
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "actor_critic.pt"))
    evaluated = []
    monkeypatch.setattr(actor_critic, "evaluate", lambda agent, *a, **k: evaluated.append(agent))
    actor_critic.evaluate_checkpoint(Args(eval_checkpoint=path, eval_episodes=1))
    (loaded,) = evaluated
    assert all(loaded.actor[i] is loaded.critic[i] for i in range(4))
    obs = torch.randn(4, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.policy_params(obs), agent.policy_params(obs))
        torch.testing.assert_close(loaded.value(obs), agent.value(obs))


@pytest.mark.parametrize("rmsprop, first_step", [(False, 1.0), (True, 10.0)])
def test_rmsprop_flag_takes_the_a2c_optimizer(rmsprop, first_step, tmp_path, monkeypatch):
    """The first step of an optimizer from zero state moves each weight by a fixed multiple of the
    learning rate, whatever the gradient's size: Adam by lr (bias-corrected m / sqrt(v) = sign g),
    RMSprop with alpha 0.99 by lr g / sqrt(0.01 g^2) = 10 lr. One update on CartPole, so the
    largest change of any weight tells which optimizer --rmsprop built, and with which alpha."""
    lr = 1e-4
    agent = train_recorded(tmp_path, monkeypatch, num_envs=2, num_steps=8, total_timesteps=16,
                           learning_rate=lr, anneal_lr=False, rmsprop=rmsprop)
    moved = max((agent.state_dict()[k] - v).abs().max().item() for k, v in agent.initial.items())
    assert moved / lr == pytest.approx(first_step, rel=0.01)


# One-line mistakes that this suite must catch (`python tests/mutants.py --only actor_critic`):
# (name, file, exact text, its replacement[, text, replacement ...]).
MUTANTS = [
    ("actor_critic: the shared network's policy on a copy of the trunk (not shared)",
     "actor_critic.py", "nn.Sequential(*self.critic[:4], linear(64, n_out, std=0.01))",
     "nn.Sequential(*mlp(obs_dim, 1, 1.0)[:4], linear(64, n_out, std=0.01))"),
    ("actor_critic: terminated mask dropped from the TD target", "actor_critic.py",
     "compute_gae(rewards, values, next_values, terminated, dones,",
     "compute_gae(rewards, values, next_values, torch.zeros_like(terminated), dones,"),
    ("actor_critic: done in place of terminated (no bootstrap at truncation)", "actor_critic.py",
     "compute_gae(rewards, values, next_values, terminated, dones,",
     "compute_gae(rewards, values, next_values, dones, dones,"),
    ("actor_critic: bootstrap from the reset observation", "actor_critic.py",
     "next_obs_buf[step, ended] = np.stack(infos[\"final_obs\"][ended])", "pass"),
    ("actor_critic: TD target and advantage computed with gradient", "actor_critic.py",
     "with torch.no_grad():  # the TD target", "with torch.enable_grad():  # the TD target"),
    ("actor_critic: advantage recomputed through the critic in the loss", "actor_critic.py",
     "pg_loss = policy_gradient_loss(logprobs, b_advantages)",
     "pg_loss = -(logprobs * (b_returns - values.flatten())).mean()"),
    ("actor_critic: advantage with the wrong sign", "actor_critic.py",
     "return -(logprobs * weights.detach()).mean()", "return (logprobs * weights.detach()).mean()"),
    ("actor_critic: the policy loss's weights not detached", "actor_critic.py",
     "return -(logprobs * weights.detach()).mean()", "return -(logprobs * weights).mean()"),
    ("actor_critic: the advantages negated at the call", "actor_critic.py",
     "policy_gradient_loss(logprobs, b_advantages)",
     "policy_gradient_loss(logprobs, -b_advantages)"),
    ("actor_critic: entropy bonus sign flipped", "actor_critic.py",
     "- args.ent_coef * entropy", "+ args.ent_coef * entropy"),
    ("actor_critic: entropy bonus left out", "actor_critic.py",
     "loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * entropy",
     "loss = pg_loss + args.vf_coef * v_loss"),
    ("actor_critic: value coefficient ignored", "actor_critic.py",
     "+ args.vf_coef * v_loss", "+ v_loss"),
    ("actor_critic: the value loss without its 0.5", "actor_critic.py",
     "return 0.5 * loss.mean()", "return loss.mean()"),
    ("actor_critic: V(s) and V(s') swapped in the one critic pass", "actor_critic.py",
     "agent.value(torch.cat([obs, next_obs]))", "agent.value(torch.cat([next_obs, obs]))"),
    ("actor_critic: value target is the advantage", "actor_critic.py",
     "returns = advantages + values", "returns = advantages"),
    ("actor_critic: value target is A + V(s')", "actor_critic.py",
     "returns = advantages + values", "returns = advantages + next_values"),
    ("actor_critic: value loss against the advantage", "actor_critic.py",
     "v_loss = value_loss(values.flatten(), b_returns)",
     "v_loss = value_loss(values.flatten(), b_advantages)"),
    ("actor_critic: value loss on a detached V(s) (the critic never learns)", "actor_critic.py",
     "v_loss = value_loss(values.flatten(), b_returns)",
     "v_loss = value_loss(values.detach().flatten(), b_returns)"),
    ("actor_critic: policy head on a detached shared trunk", "actor_critic.py",
     "out = self.actor(self.obs_norm(obs))",
     "out = self.actor[4:](self.actor[:4](self.obs_norm(obs)).detach())"),
    ("actor_critic: reward-scaling return restarted every segment (the carry dropped)",
     "actor_critic.py", "rewards, running_return = scale_rewards(", "rewards, _ = scale_rewards("),
    ("actor_critic: no gradient clipping", "actor_critic.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
    ("actor_critic: --rmsprop ignored (always Adam)", "actor_critic.py",
     "foreach=True) if args.rmsprop", "foreach=True) if False"),
    ("actor_critic: RMSprop's alpha 0.9 (not SB3's 0.99)", "actor_critic.py",
     "alpha=0.99, eps=1e-5,", "alpha=0.9, eps=1e-5,"),
]
