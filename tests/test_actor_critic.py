"""The math of actor_critic.py: the TD-error advantage and its target (end to end, on toy envs that terminate,
truncate, or both at once), the detached TD target, the three terms of the loss, and the shared trunk."""

import glob

import gymnasium as gym
import numpy as np
import pytest
import torch

import actor_critic
from actor_critic import Agent, Args, actor_critic_loss, load_agent

SMOKE = {  # for test_scripts.py: a CartPole run of 128 steps, the keys of every iteration, bad input of its own flags
    "tiny": ["--num-envs", "2", "--num-steps", "8", "--total-timesteps", "128", "--eval-episodes", "2"],
    "keys": {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss", "losses/entropy",
             "losses/explained_variance"},
    "bad_input": {
        "budget under one batch": (["--total-timesteps", "10"], "less than one batch"),
        "zero rollout": (["--num-steps", "0"], "--num-steps must be positive"),
        "rollout too big for memory": (["--num-steps", str(10**16), "--total-timesteps", str(10**17)],
                                       "does not fit in memory"),
        "negative lambda": (["--gae-lambda", "-0.1"], "--gae-lambda must be in [0, 1]"),
        "negative value coefficient": (["--vf-coef", "-1"], "--vf-coef must be >= 0"),
        "nan grad norm": (["--max-grad-norm", "nan"], "--max-grad-norm must be positive"),
        "batch of one": (["--num-envs", "1", "--num-steps", "1", "--norm-adv", "--total-timesteps", "8"],
                         "a batch of 1 sample: advantage normalisation needs at least 2"),
    },
}


class RecordingAgent(Agent):
    """The script's Agent, remembering every instance and its initial weights, so a test can look inside a run."""

    made = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial = {k: v.clone() for k, v in self.state_dict().items()}
        RecordingAgent.made.append(self)


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
def test_advantage_is_the_td_error_and_the_target_bootstraps_only_at_truncation(env_id, ends_by, length, tmp_path,
                                                                                monkeypatch):
    """End to end, with the default lambda 0: every advantage the loss sees is r + gamma (1 - terminated) V(s') - V(s)
    and every value target is r + gamma (1 - terminated) V(s'), computed here from the env's rules alone (the
    observation is the step count c, reward 1, the episode ends after `length` steps, s' = c + 1 also at the end)
    and the critic of that moment. Catches: the terminated mask dropped (a terminal step bootstrapped); done used in
    place of terminated (no bootstrap at a time limit); V(reset obs) in place of V(final obs); the value loss on
    the wrong target (A, or anything but A + V_old)."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    gamma, num_steps, seen = 0.9, 8, []
    real_loss = actor_critic.actor_critic_loss

    def checked_loss(logprobs, advantages, values, returns, *rest):
        (agent,) = RecordingAgent.made
        t = len(seen) * num_steps + torch.arange(num_steps).repeat_interleave(2)  # both envs in step; (T, N) flattened
        count = (t % length).float()
        with torch.no_grad():
            v, v_next = agent.value(count[:, None]), agent.value(count[:, None] + 1)
        bootstrap = 0.0 if ends_by != "truncation" else 1.0
        v_next = torch.where(count + 1 == length, bootstrap * v_next, v_next)
        torch.testing.assert_close(values.detach(), v)
        torch.testing.assert_close(returns, 1 + gamma * v_next)
        torch.testing.assert_close(advantages, 1 + gamma * v_next - v)
        seen.append(ends_by)
        return real_loss(logprobs, advantages, values, returns, *rest)

    monkeypatch.setattr(actor_critic, "actor_critic_loss", checked_loss)
    train_recorded(tmp_path, monkeypatch, env_id=env_id, num_envs=2, num_steps=num_steps, total_timesteps=48,
                   gamma=gamma, learning_rate=1e-2)
    assert len(seen) == 3


@pytest.mark.parametrize("shared_network", [False, True], ids=["separate", "shared"])
def test_the_policy_term_never_trains_the_critic(shared_network, tmp_path, monkeypatch):
    """End to end on CartPole with vf_coef = 0: with separate networks the critic's weights stay bit for bit where
    they started while the actor moves; with vf_coef > 0 the critic moves too. Shared trunk: the value head stays
    put with vf_coef = 0. Catches: a TD target or advantage that carries gradient (computed outside no_grad, V(s')
    with gradient, A recomputed as R - V(s) in the loss), through which the policy loss trains the critic."""
    settings = dict(num_envs=2, num_steps=8, total_timesteps=128, learning_rate=1e-2, ent_coef=0.01,
                    shared_network=shared_network)
    for vf_coef in (0.0, 0.5):
        agent = train_recorded(tmp_path, monkeypatch, vf_coef=vf_coef, exp_name=f"vf{vf_coef}", **settings)
        moved = {k for k, v in agent.state_dict().items() if not torch.equal(v, agent.initial[k])}
        critic = {k for k in agent.initial if k.startswith("critic.")}
        assert any(k.startswith("actor.") for k in moved)
        assert (moved & critic == set()) if vf_coef == 0 else (critic <= moved)


def test_policy_gradient_matches_the_score_function_by_hand():
    """d/dz of -mean(A_i log softmax(z_i)[a_i]) is -A_i (onehot(a_i) - softmax(z_i)) / n, written out in numpy; one
    gradient step raises the probability of the action with a positive advantage. Catches: the advantage's sign
    flipped (the policy would move away from good actions), a sum in place of the mean."""
    agent = Agent(3, gym.spaces.Discrete(3), norm_obs=False)
    logits = torch.tensor([[0.5, -0.2, 0.1], [0.0, 1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    actions, advantages = torch.tensor([0, 2]), torch.tensor([2.0, -1.0], dtype=torch.float64)
    logprobs, entropy = agent.log_prob_entropy(logits, actions)
    zeros = torch.zeros(2, dtype=torch.float64)
    loss, pg_loss, _, _ = actor_critic_loss(logprobs, advantages, zeros, zeros, entropy, vf_coef=1.0, ent_coef=0.0)
    loss.backward()
    z = logits.detach().numpy()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -np.array([2.0, -1.0])[:, None] * (np.eye(3)[[0, 2]] - p) / 2
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-12)
    assert pg_loss.item() == pytest.approx(-(2.0 * np.log(p[0, 0]) - 1.0 * np.log(p[1, 2])) / 2)
    stepped = (logits - 0.1 * logits.grad).softmax(-1)
    assert stepped[0, 0] > p[0, 0] and stepped[1, 2] < p[1, 2]


def test_loss_combines_the_three_terms_with_their_signs():
    """Hand numbers: pg = -mean(logp A), value = 0.5 mean((V - R)^2), entropy bonus subtracted. Catches: the entropy
    bonus's sign flipped (it would lower the entropy), the value loss against A instead of R, a missing 0.5."""
    logprobs = torch.tensor([-1.0, -2.0])
    advantages, values, returns = torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    entropy = torch.tensor([0.5, 0.7])
    loss, pg_loss, v_loss, entropy_mean = actor_critic_loss(logprobs, advantages, values, returns, entropy,
                                                            vf_coef=0.5, ent_coef=0.1)
    assert pg_loss.item() == pytest.approx(3.5)  # -(-1 * 1 + -2 * 3) / 2
    assert v_loss.item() == pytest.approx(1.25)  # 0.5 * (1 + 4) / 2
    assert entropy_mean.item() == pytest.approx(0.6)
    assert loss.item() == pytest.approx(3.5 + 0.5 * 1.25 - 0.1 * 0.6)


def test_entropy_bonus_raises_the_entropy():
    """A gradient step on the entropy term alone (A = 0, vf_coef = 0) moves a categorical policy towards uniform.
    Catches: the entropy bonus's sign flipped."""
    agent = Agent(3, gym.spaces.Discrete(3), norm_obs=False)
    logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    logprobs, entropy = agent.log_prob_entropy(logits, torch.tensor([0]))
    zero = torch.zeros(1)
    loss, _, _, before = actor_critic_loss(logprobs, zero, zero, zero, entropy, vf_coef=0.0, ent_coef=1.0)
    loss.backward()
    _, after = agent.log_prob_entropy(logits.detach() - 0.1 * logits.grad, torch.tensor([0]))
    assert after.item() > before.item()


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(2), gym.spaces.Box(-1, 1, (2,))], ids=["discrete", "box"])
def test_shared_trunk_gets_both_gradients_and_each_head_only_its_own(action_space):
    """--shared-network: one trunk; the policy loss's gradient reaches the trunk and the policy head but not the value
    head, the value loss's the trunk and the value head but not the policy head. Separate networks: the policy
    loss never reaches the critic. Catches: a policy head on a detached trunk (the trunk would learn from V alone)."""
    torch.manual_seed(0)
    obs = torch.randn(8, 3)
    shared, separate = (Agent(3, action_space, norm_obs=True, shared_network=s) for s in (True, False))
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in separate.parameters())
    for agent in (shared, separate):
        params = agent.policy_params(obs)
        agent.zero_grad(set_to_none=True)
        logprobs, _ = agent.log_prob_entropy(params, agent.dist(params.detach()).sample())
        logprobs.mean().backward()
        reached = {name for name, p in agent.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert any(name.startswith("actor.") for name in reached) and not any(n.startswith("critic.") for n in reached)
        assert agent is separate or {"trunk." + n for n, _ in agent.trunk.named_parameters()} <= reached
    shared.zero_grad(set_to_none=True)
    shared.value(obs).sum().backward()
    reached = {name for name, p in shared.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {n for n, _ in shared.named_parameters() if n.startswith(("trunk.", "critic."))}


def test_shared_network_checkpoint_reloads(tmp_path, monkeypatch):
    """A --shared-network model saves and reloads as one (the flag travels with the checkpoint)."""
    agent = train_recorded(tmp_path, monkeypatch, num_envs=2, num_steps=8, total_timesteps=64, shared_network=True,
                           save_model=True)
    loaded, saved_args = load_agent(glob.glob(str(tmp_path / "runs" / "*" / "actor_critic.pt"))[0], torch.device("cpu"))
    assert saved_args.shared_network and isinstance(loaded.trunk, torch.nn.Sequential)
    obs = torch.randn(4, 4)
    torch.testing.assert_close(loaded.policy_params(obs), agent.policy_params(obs))
    torch.testing.assert_close(loaded.value(obs), agent.value(obs))


# One-line mistakes in actor_critic.py that this suite must catch (`python tests/mutants.py --only actor_critic`):
# (name, file, exact text, its replacement[, text, replacement ...]).
MUTANTS = [
    ("actor_critic: the rollout samples without the shared trunk", "actor_critic.py",
     "for net in (self.trunk, self.actor) for m in net.modules()", "for net in (self.actor,) for m in net.modules()"),
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
     "pg_loss = -(logprobs * advantages).mean()", "pg_loss = -(logprobs * (returns - values)).mean()"),
    ("actor_critic: advantage with the wrong sign", "actor_critic.py",
     "pg_loss = -(logprobs * advantages).mean()", "pg_loss = (logprobs * advantages).mean()"),
    ("actor_critic: entropy bonus sign flipped", "actor_critic.py",
     "loss - ent_coef * entropy if ent_coef", "loss + ent_coef * entropy if ent_coef"),
    ("actor_critic: entropy bonus left out whatever its coefficient", "actor_critic.py",
     "loss - ent_coef * entropy if ent_coef else loss", "loss - ent_coef * entropy if not ent_coef else loss"),
    ("actor_critic: V(s) and V(s') swapped in the one critic pass", "actor_critic.py",
     "agent.value(torch.cat([obs, next_obs]))", "agent.value(torch.cat([next_obs, obs]))"),
    ("actor_critic: value target is the advantage", "actor_critic.py",
     "returns = advantages + values", "returns = advantages"),
    ("actor_critic: value loss against the advantage", "actor_critic.py",
     "v_loss = 0.5 * ((values - returns) ** 2).mean()", "v_loss = 0.5 * ((values - advantages) ** 2).mean()"),
    ("actor_critic: value loss on a detached V(s) (the critic never learns)", "actor_critic.py",
     "b_advantages, values.flatten(), b_returns", "b_advantages, values.detach().flatten(), b_returns"),
    ("actor_critic: policy head on a detached shared trunk", "actor_critic.py",
     "out = self.actor(self.trunk(self.obs_norm(obs)))", "out = self.actor(self.trunk(self.obs_norm(obs)).detach())"),
    ("actor_critic: no gradient clipping", "actor_critic.py",
     "nn.utils.clip_grad_norm_(parameters, args.max_grad_norm, foreach=True)", "pass"),
]
