"""Exact policy gradients of small tabular problems, and Monte-Carlo estimates of them made with a
script's own functions (checks 1 and 2 of IMPLEMENTATION_NOTES.md). Shared by the tests of the
policy-gradient scripts; float64.

A tabular MDP with a softmax policy pi(a|s) = softmax(theta[s])_a and episodes that end by
termination (each transition ends the episode with some probability), so every sum over time is
finite:

    J(theta)   = rho0^T (I - gamma P_pi)^-1 r_pi      (exact, differentiable: autograd gives grad J)
    grad J     = sum_s d_gamma(s) sum_a grad pi(a|s) Q(s, a),   d_gamma = rho0^T (I - gamma P_pi)^-1
    g_dropped  = sum_s d_1(s)     sum_a grad pi(a|s) Q(s, a),   d_1     = rho0^T (I - P_pi)^-1

For a softmax, d/dtheta[s, a] of sum_b pi(b|s) Q(s, b) (Q held fixed) is pi(a|s) (Q(s, a) - V(s)).
g_dropped is what E[sum_t grad log pi(a_t|s_t) G_t] estimates (the gamma^t factor dropped), grad J
what the whole-episode estimator E[sum_t grad log pi(a_t|s_t) R(tau)] estimates."""

from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64


@dataclass
class TabularMDP:
    P: (
        torch.Tensor
    )  # (S, A, S + 1): next-state probabilities; the last column is the probability of terminating
    r: torch.Tensor  # (S, A): mean reward
    rho0: torch.Tensor  # (S,)
    gamma: float
    reward_noise: float = 0.0  # std of Gaussian noise added to every reward

    @property
    def num_states(self) -> int:
        return self.r.shape[0]

    def policy(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.softmax(-1)

    def solve(
        self, theta: torch.Tensor, gamma: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """V, Q and the visitation rho0^T (I - gamma P_pi)^-1 for the given discount."""
        pi = self.policy(theta)
        P_pi = torch.einsum("sa,sat->st", pi, self.P[:, :, :-1])
        r_pi = (pi * self.r).sum(-1)
        M = torch.eye(self.num_states, dtype=DTYPE) - gamma * P_pi
        V = torch.linalg.solve(M, r_pi)
        Q = self.r + gamma * torch.einsum("sat,t->sa", self.P[:, :, :-1], V)
        visits = torch.linalg.solve(M.T, self.rho0)
        return V, Q, visits

    def J(self, theta: torch.Tensor) -> torch.Tensor:
        V, _, _ = self.solve(theta, self.gamma)
        return self.rho0 @ V

    def pgt_gradient(self, theta: torch.Tensor, drop_discount: bool) -> torch.Tensor:
        """The policy-gradient-theorem sum; drop_discount: with the undiscounted visitation d_1 (no
        gamma^t)."""
        with torch.no_grad():
            V, Q, d_gamma = self.solve(theta, self.gamma)
            d = self.solve(theta, 1.0)[2] if drop_discount else d_gamma
            return d[:, None] * self.policy(theta) * (Q - V[:, None])


def random_mdp(
    seed: int = 0, S: int = 3, A: int = 2, gamma: float = 0.6, terminate: float = 0.2
) -> TabularMDP:
    """A discount well below 1 and episodes of 5 steps on average: gamma^t matters, so grad J and
    g_dropped differ."""
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(S, A, S, generator=g, dtype=DTYPE) + 0.1
    P = (1 - terminate) * P / P.sum(-1, keepdim=True)
    P = torch.cat([P, torch.full((S, A, 1), terminate, dtype=DTYPE)], -1)
    r = torch.randn(S, A, generator=g, dtype=DTYPE) + 1.0
    rho0 = torch.rand(S, generator=g, dtype=DTYPE) + 0.2
    return TabularMDP(P, r, rho0 / rho0.sum(), gamma)


def bandit(rewards, reward_noise: float = 1.0) -> TabularMDP:
    """A K-armed bandit as a one-state MDP whose episodes end after one pull."""
    r = torch.as_tensor(rewards, dtype=DTYPE)[None]
    P = torch.zeros(1, r.shape[1], 2, dtype=DTYPE)
    P[..., 1] = 1.0
    return TabularMDP(P, r, torch.ones(1, dtype=DTYPE), gamma=0.99, reward_noise=reward_noise)


@dataclass
class Batch:
    """Episodes laid out time-major as a script stores them: column n holds episodes_per_column
    whole episodes one after the other, then padding (valid False, done and terminated True, reward
    0) down to the longest column."""

    states: torch.Tensor  # (T, N) long
    actions: torch.Tensor  # (T, N) long
    rewards: torch.Tensor  # (T, N) float64
    next_states: (
        torch.Tensor
    )  # (T, N) long: s_{t+1}, or S (a terminal marker) where the episode terminated
    dones: torch.Tensor  # (T, N) bool
    valid: torch.Tensor  # (T, N) bool
    episode: torch.Tensor  # (T, N) long: the episode each step belongs to, 0 .. num_episodes - 1
    num_episodes: int


def sample_episodes(
    mdp: TabularMDP, theta: torch.Tensor, columns: int, episodes_per_column: int, seed: int
) -> Batch:
    rng = np.random.default_rng(seed)
    S = mdp.num_states
    pi, P, r, rho0 = (x.detach().numpy() for x in (mdp.policy(theta), mdp.P, mdp.r, mdp.rho0))

    def draw(probs):  # one categorical draw per row
        return (
            (rng.random((len(probs), 1)) > probs.cumsum(-1)).sum(-1).clip(max=probs.shape[-1] - 1)
        )

    state = draw(np.tile(rho0, (columns, 1)))
    finished = np.zeros(columns, dtype=np.int64)
    rows = []
    while (active := finished < episodes_per_column).any():
        action = draw(pi[state])
        reward = r[state, action] + mdp.reward_noise * rng.standard_normal(columns)
        nxt = draw(P[state, action])  # S: terminated
        done = nxt == S
        rows.append((
            state,
            action,
            np.where(active, reward, 0.0),
            np.where(active, nxt, S),
            done | ~active,
            active,
            np.arange(columns) * episodes_per_column
            + np.minimum(finished, episodes_per_column - 1),
        ))
        finished = finished + (done & active)
        state = np.where(done, draw(np.tile(rho0, (columns, 1))), np.minimum(nxt, S - 1))
    states, actions, rewards, next_states, dones, valid, episode = (
        torch.from_numpy(np.stack(x)) for x in zip(*rows)
    )
    return Batch(
        states,
        actions,
        rewards.to(DTYPE),
        next_states,
        dones,
        valid,
        episode,
        columns * episodes_per_column,
    )


def per_episode_gradients(theta: torch.Tensor, batch: Batch, loss_fn, weights_of) -> torch.Tensor:
    """The script's estimator, one estimate per episode: every episode gets its own copy of theta,
    so one backward pass of loss_fn over the whole batch gives each episode's gradient.
    loss_fn(logprobs, weights) is the script's loss, a mean over steps, scaled here by the number of
    steps back to a sum. weights_of(theta_copies) gives the (T, N) weights and may depend on theta
    (a baseline computed from the policy), as a test of the detach. Returns (num_episodes, S, A):
    the estimates of grad J, i.e. minus the gradients of the loss."""
    copies = theta.detach().expand(batch.num_episodes, *theta.shape).clone().requires_grad_()
    v = batch.valid
    logprobs = (
        copies[batch.episode[v], batch.states[v]]
        .log_softmax(-1)
        .gather(-1, batch.actions[v, None])[:, 0]
    )
    weights = weights_of(copies)[v]
    (loss_fn(logprobs, weights) * int(v.sum())).backward()
    return -copies.grad


def z_scores(estimates: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(mean - target) / standard error, per component."""
    n = estimates.shape[0]
    return (estimates.mean(0) - target) / (estimates.std(0) / n**0.5 + 1e-300)


def total_variance(estimates: torch.Tensor) -> float:
    """Trace of the covariance of the per-episode estimates."""
    return estimates.var(0).sum().item()
