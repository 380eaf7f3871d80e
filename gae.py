"""Advantage and return estimators shared by the critic-based scripts.

All tensors are time-major, shape (T, N) or (T,), on any device and of any float dtype; the result
has the shape, dtype and device of `rewards` and no gradient (these are regression targets). One
reversed loop over T, no loop over envs, run in numpy on the CPU (per step, numpy costs about a
microsecond where torch's dispatch costs several: docs/plumbing.md).

    compute_gae:   delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)
                   A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1}        (GAE paper, eq. 16)
    reward_to_go:  G_t     = r_t + gamma (1 - done_t) G_{t+1}

`terminated[t]`: the episode really ended at t, so V(s_{t+1}) is not bootstrapped.
`dones[t]`: it ended for any reason (terminated or truncated), so the recursion stops there.
A truncated step therefore bootstraps from `next_values[t]`, the value of its final observation.
Both flags are read as booleans whatever their dtype (any non-zero value is True), so a step that is
both terminated and truncated, passed as terminated + truncated = 2, still just ends the episode.
"""

import numpy as np
import torch


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) not in (1, 2):
        raise ValueError(f"expected tensors of one shape (T,) or (T, N), got {shapes}")


def compute_gae(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """Generalised advantage estimates A_t (GAE paper, eq. 16), zero past the end of the segment."""
    _check_shapes(rewards=rewards, values=values, next_values=next_values, terminated=terminated,
                  dones=dones)
    dtype = rewards.dtype
    bootstrap = terminated.logical_not().to(dtype) * next_values.to(dtype)
    deltas = rewards + gamma * bootstrap - values.to(dtype)
    if gae_lambda == 0:  # A_t = delta_t, the one-step TD error: no recursion
        return deltas.detach()
    return _discounted_sum(deltas, gamma * gae_lambda * dones.logical_not().to(dtype))


def reward_to_go(rewards, dones, gamma: float):
    """Discounted return from each step to the end of its episode (or of the segment)."""
    _check_shapes(rewards=rewards, dones=dones)
    return _discounted_sum(rewards, gamma * dones.logical_not().to(rewards.dtype))


def _discounted_sum(x: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """y_t = x_t + decay_t y_{t+1}, y_T = 0: both recursions (decay_t = 0 where an episode ends)."""
    work = x.float() if x.dtype == torch.bfloat16 else x  # numpy has no bfloat16
    xs, decays = (t.detach().to(work.dtype).cpu().numpy() for t in (work, decay))
    ys, y = np.empty_like(xs), np.zeros_like(xs[0])
    for t in reversed(range(len(xs))):
        y = xs[t] + decays[t] * y
        ys[t] = y
    return torch.from_numpy(ys).to(x.device, x.dtype)
