"""Advantage and return estimators shared by the critic-based scripts.

All tensors are time-major, shape (T, N) or (T,), on any device and of any float dtype; the
result has the shape and dtype of `rewards`. One reversed loop over T, no loop over envs.

    compute_gae:   delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)
                   A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1}        (GAE paper, eq. 16)
    reward_to_go:  G_t     = r_t + gamma (1 - done_t) G_{t+1}

`terminated[t]`: the episode really ended at t, so V(s_{t+1}) is not bootstrapped.
`dones[t]`: it ended for any reason (terminated or truncated), so the recursion stops there.
A truncated step therefore bootstraps from `next_values[t]`, the value of its final observation.
Both flags are read as booleans whatever their dtype (any non-zero value is True), so a step that is both
terminated and truncated, passed as terminated + truncated = 2, still just ends the episode.
"""

import torch


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) not in (1, 2):
        raise ValueError(f"expected tensors of one shape (T,) or (T, N), got {shapes}")


def compute_gae(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """Generalised advantage estimates A_t (GAE paper, eq. 16), zero past the end of the segment."""
    _check_shapes(rewards=rewards, values=values, next_values=next_values, terminated=terminated, dones=dones)
    dtype = rewards.dtype
    deltas = rewards + gamma * terminated.logical_not().to(dtype) * next_values.to(dtype) - values.to(dtype)
    if gae_lambda == 0:  # A_t = delta_t, the one-step TD error: no recursion
        return deltas
    decay = gamma * gae_lambda * dones.logical_not().to(dtype)
    advantages = torch.empty_like(deltas)
    next_advantage = torch.zeros_like(deltas[0])
    for t in reversed(range(deltas.shape[0])):
        next_advantage = deltas[t] + decay[t] * next_advantage
        advantages[t] = next_advantage
    return advantages


def reward_to_go(rewards, dones, gamma: float):
    """Discounted return from each step to the end of its episode (or of the segment)."""
    _check_shapes(rewards=rewards, dones=dones)
    decay = gamma * dones.logical_not().to(rewards.dtype)
    returns = torch.empty_like(rewards)
    next_return = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        next_return = rewards[t] + decay[t] * next_return
        returns[t] = next_return
    return returns
