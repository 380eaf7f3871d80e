"""Tiny environments that make one behaviour observable. Registered on import, so a subprocess can
use them as `--env-id tests.toy_envs:toy/Count-v0` (with the repo root on PYTHONPATH)."""

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Discrete, MultiDiscrete, Sequence


class CountEnv(gym.Env):
    """Observation = steps taken in this episode; reward 1 per step; terminates after `terminate_at`
    steps if given (the registered time limit truncates otherwise). `reward` may be NaN to poison
    the loss."""

    observation_space = Box(0.0, np.inf, (1,), np.float32)
    action_space = Discrete(2)
    actions_seen = (
        set()
    )  # every Discrete action any instance was given (for tests of the action mapping)

    def __init__(self, terminate_at=None, reward=1.0, action_space=None, render_mode=None):
        self.terminate_at, self.reward = terminate_at, reward
        if action_space is not None:
            self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        if not self.action_space.contains(
            action
        ):  # what a strict env does with an action outside its space
            raise ValueError(f"action {action!r} outside {self.action_space}")
        if isinstance(self.action_space, Discrete):
            type(self).actions_seen.add(int(action))
        self.steps += 1
        terminated = self.terminate_at is not None and self.steps >= self.terminate_at
        return np.array([self.steps], np.float32), self.reward, terminated, False, {}


class NoRenderModeEnv(CountEnv):
    """A CountEnv whose constructor takes no render_mode (many third-party envs): gym.make(id,
    render_mode=None) fails on it, so evaluation must not pass one when it films nothing."""

    def __init__(self):
        super().__init__()


class BadFramesEnv(CountEnv):
    """Takes render_mode="rgb_array" but ignores it and draws a 1-D array: --capture-video must
    refuse it at the start (RecordVideo would fail only after training)."""

    metadata = {"render_modes": ["rgb_array"]}

    def render(self):
        return np.zeros(3, np.uint8)


class InfObservationEnv(CountEnv):
    """Box actions (so observations are normalised by default) and an infinite observation from the
    2nd step."""

    action_space = Box(-1.0, 1.0, (1,), np.float32)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return (
            np.array([np.inf if self.steps >= 2 else 1.0], np.float32),
            reward,
            terminated,
            truncated,
            info,
        )


class SequenceObservationEnv(CountEnv):
    """Observes a variable-length Sequence, which has no flat fixed-size vector: refused at the
    start."""

    observation_space = Sequence(Discrete(2))


gym.register("toy/Count-v0", entry_point=CountEnv, max_episode_steps=5)
gym.register(
    "toy/CountTerminating-v0", entry_point=CountEnv, max_episode_steps=5, kwargs={"terminate_at": 3}
)
# The env's own end coincides with the time limit: terminated and truncated are both True on step 5.
gym.register(
    "toy/CountTerminatingAtLimit-v0",
    entry_point=CountEnv,
    max_episode_steps=5,
    kwargs={"terminate_at": 5},
)
gym.register(
    "toy/NaNReward-v0", entry_point=CountEnv, max_episode_steps=5, kwargs={"reward": float("nan")}
)
gym.register(
    "toy/MultiDiscreteActions-v0",
    entry_point=CountEnv,
    max_episode_steps=5,
    kwargs={"action_space": MultiDiscrete([2, 3])},
)
# Actions -1, 0, 1 (Discrete(3, start=-1)): the policy's index i must reach the env as i - 1.
gym.register(
    "toy/OffsetDiscrete-v0",
    entry_point=CountEnv,
    max_episode_steps=5,
    kwargs={"action_space": Discrete(3, start=-1)},
)
gym.register("toy/NoRenderMode-v0", entry_point=NoRenderModeEnv, max_episode_steps=5)
gym.register("toy/BadFrames-v0", entry_point=BadFramesEnv, max_episode_steps=5)
gym.register("toy/InfObservation-v0", entry_point=InfObservationEnv, max_episode_steps=5)
gym.register(
    "toy/EmptyBoxActions-v0",
    entry_point=CountEnv,
    max_episode_steps=5,
    kwargs={"action_space": Box(-1.0, 1.0, (0,), np.float32)},
)
# Integer Box actions: a Gaussian's samples are no such actions (the env checks them): refused at
# the start.
gym.register(
    "toy/IntBoxActions-v0",
    entry_point=CountEnv,
    max_episode_steps=5,
    kwargs={"action_space": Box(0, 4, (1,), np.int64)},
)
gym.register("toy/Endless-v0", entry_point=CountEnv)  # no time limit: an episode never ends
gym.register("toy/SequenceObservations-v0", entry_point=SequenceObservationEnv, max_episode_steps=5)
