"""Ablation: trpo.py with the normalisation timing of SB3's VecNormalize, everything else unchanged.

trpo.py moves its observation and return statistics once per iteration, after the update, so the rollout, pi_old
and the update all see the same frozen statistics. SB3's VecNormalize (which sb3-contrib's TRPO trains behind)
updates both at every env step and stores each observation and reward already normalised with the statistics of
that moment. This script writes trpo_sb3norm.py into the repo root (gitignored): trpo.py with that one difference
(obs statistics updated with every batch of observations, reset ones included; the terminal observation
normalised without an update; the return statistics updated with every step's discounted return, reset on any
episode end; the agent itself normalises nothing; evaluation uses the statistics of the end of training, frozen).

    python benchmarks/sb3norm_ablation.py
    python benchmarks/run.py --name ablation_sb3norm --scripts trpo_sb3norm.py --envs HalfCheetah-v5 --seeds 1 2 3 \
        -- --num-steps 512 --num-minibatches 8 --max-kl 0.06 --cg-damping 0.6

It is a patch applied to trpo.py's text: it fails loudly if trpo.py's lines have moved on.
"""

import argparse
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (trpo.py's text, its replacement): each must occur exactly once
PATCH = [
    # the agent normalises nothing; the per-step statistics live outside it, as in a VecNormalize wrapper
    ("    agent = Agent(obs_dim, envs.single_action_space, args.norm_obs).to(device)\n",
     "    agent = Agent(obs_dim, envs.single_action_space, False).to(device)\n"
     "    step_obs_norm, step_ret_norm = RunningNorm(obs_dim).to(device), RunningNorm(()).to(device)\n"
     "    step_ret = torch.zeros(args.num_envs, device=device)\n"
     "\n"
     "    def vn_obs(o, update=True):  # VecNormalize: update the statistics with o, then normalise o with them\n"
     "        t = torch.as_tensor(o, dtype=torch.float32, device=device)\n"
     "        if not args.norm_obs:\n"
     "            return t.cpu().numpy()\n"
     "        if update:\n"
     "            step_obs_norm.update(t)\n"
     "        return step_obs_norm(t).cpu().numpy()\n"),
    ("    observation, _ = envs.reset(seed=args.seed)\n",
     "    observation, _ = envs.reset(seed=args.seed)\n"
     "    with torch.no_grad():\n"
     "        observation = vn_obs(observation)\n"),
    # the statistics are written inside the rollout: no_grad instead of inference_mode
    ("        with torch.inference_mode():\n            sample = agent.sampler(rng)\n",
     "        with torch.no_grad():\n            sample = agent.sampler(rng)\n"),
    ("                done_buf[step] = terminated_buf[step] | truncated\n",
     "                done_buf[step] = terminated_buf[step] | truncated\n"
     "                raw_reward = reward_buf[step].copy()\n"
     "                if args.norm_reward:  # VecNormalize: R = gamma R + r, update, r / std(R) clipped, R = 0 at ends\n"
     "                    step_ret = step_ret * args.gamma + torch.from_numpy(raw_reward).to(device)\n"
     "                    step_ret_norm.update(step_ret)\n"
     "                    reward_buf[step] = (torch.from_numpy(raw_reward).to(device)\n"
     "                                        / torch.sqrt(step_ret_norm.var + step_ret_norm.eps)).clamp(-10, 10).cpu().numpy()\n"
     "                    step_ret[torch.from_numpy(done_buf[step]).to(device)] = 0\n"
     "                observation = vn_obs(observation)\n"),
    ("                episode_return += reward_buf[step]\n", "                episode_return += raw_reward\n"),
    ("                    next_obs_buf[step, ended] = np.stack(infos[\"final_obs\"][ended])\n",
     "                    next_obs_buf[step, ended] = vn_obs(np.stack(infos[\"final_obs\"][ended]), update=False)\n"),
    # trpo.py's once-per-iteration reward scaling and observation update: off (already done per step)
    ("            if args.norm_reward:\n                rewards, running_return",
     "            if False:\n                rewards, running_return"),
    ("            if args.norm_obs:  # statistics move once per iteration",
     "            if False:  # statistics move once per iteration"),
    ("        eval_returns = evaluate(agent.eval(),",
     "        agent.obs_norm = step_obs_norm if args.norm_obs else agent.obs_norm\n"
     "        eval_returns = evaluate(agent.eval(),"),
]


def make_variant(source: str) -> str:
    for old, new in PATCH:
        if source.count(old) != 1:
            raise SystemExit(f"trpo.py has changed: {old.strip()[:60]!r} occurs {source.count(old)} times, not once")
        source = source.replace(old, new)
    return source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "trpo_sb3norm.py"))
    args = parser.parse_args()
    with open(os.path.join(ROOT, "trpo.py")) as f:
        variant = make_variant(f.read())
    with open(args.out, "w") as f:
        f.write(variant)
    print(f"wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
