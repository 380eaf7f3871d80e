"""Ablation: trpo.py with the normalisation timing of SB3's VecNormalize, everything else unchanged.

trpo.py moves its statistics once per iteration: the return statistics with the whole rollout's
discounted returns, before its rewards are scaled; the observation statistics after the update
(update_obs_norm), so the rollout, pi_old and the update all see the same frozen observation
statistics. SB3's VecNormalize (which sb3-contrib's TRPO trains behind) updates both at every env
step and stores each observation and reward already normalised with the statistics of that
moment. This script writes trpo_sb3norm.py into the repo root (gitignored): trpo.py with that one
difference (obs statistics updated with every batch of observations, reset ones included; the
terminal observation normalised without an update; the return statistics updated with every
step's discounted return, reset on any episode end; the agent itself normalises nothing;
evaluation, and the checkpoint of --save-model, use the statistics of the end of training,
frozen).

    python benchmarks/sb3norm_ablation.py
    python benchmarks/run.py --name ablation_sb3norm --scripts trpo_sb3norm.py \
        --envs HalfCheetah-v5 --seeds 1 2 3 \
        -- --num-steps 512 --num-minibatches 8 --max-kl 0.06 --cg-damping 0.6

It is a patch applied to trpo.py's text: it fails loudly if trpo.py's lines have moved on.
"""

import argparse
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DONE = ("                done_buf[step] = terminated_buf[step] | truncated"
        "  # it may end both ways at once\n")
# (trpo.py's text, its replacement): each must occur exactly once
PATCH = [
    # the agent normalises nothing (its Args say norm_obs=False, whatever args.norm_obs says); the
    # per-step statistics live outside it, as in a VecNormalize wrapper
    ("    agent = Agent(obs_dim, action_space, args).to(device)\n",
     "    agent = Agent(obs_dim, action_space, Args(**{**asdict(args), \"norm_obs\": False}))\n"
     "    agent = agent.to(device)\n"
     "    step_obs_norm, step_ret_norm = (RunningNorm(obs_dim).to(device),\n"
     "                                    RunningNorm(()).to(device))\n"
     "    step_ret = torch.zeros(args.num_envs, device=device)\n"
     "\n"
     "    def vn_obs(o, update=True):  # VecNormalize: update the statistics with o, normalise o\n"
     "        t = torch.as_tensor(o, dtype=torch.float32, device=device)\n"
     "        if not args.norm_obs:\n"
     "            return t.cpu().numpy()\n"
     "        if update:\n"
     "            step_obs_norm.update(t)\n"
     "        return step_obs_norm(t).cpu().numpy()\n"),
    ("    global_step, observation = 0, envs.reset(seed=args.seed)[0]\n",
     "    global_step, observation = 0, envs.reset(seed=args.seed)[0]\n"
     "    with torch.no_grad():\n"
     "        observation = vn_obs(observation)\n"),
    # the statistics are written inside the rollout: no_grad instead of inference_mode (the
    # sampler's probe, `observation`, is already normalised, as everything the agent sees)
    ("        with torch.inference_mode():\n"
     "            sample = make_sampler(agent, rng, observation)\n",
     "        with torch.no_grad():\n"
     "            sample = make_sampler(agent, rng, observation)\n"),
    # once done_buf[step] is set: the step's reward and observation, normalised as they come
    (DONE + "                next_obs_buf[step] = observation\n",
     DONE + "                raw_reward = reward_buf[step].copy()\n"
     "                if args.norm_reward:  # VecNormalize: R = gamma R + r, update, r / std(R)\n"
     "                    r = torch.from_numpy(raw_reward).to(device)\n"
     "                    step_ret = step_ret * args.gamma + r\n"
     "                    step_ret_norm.update(step_ret)\n"
     "                    std = torch.sqrt(step_ret_norm.var + step_ret_norm.eps)\n"
     "                    reward_buf[step] = (r / std).clamp(-10, 10).cpu().numpy()\n"
     "                    step_ret[torch.from_numpy(done_buf[step]).to(device)] = 0  # at ends\n"
     "                observation = vn_obs(observation)\n"
     "                next_obs_buf[step] = observation\n"),
    ("                episode_return += reward_buf[step]\n",
     "                episode_return += raw_reward\n"),
    ("                    next_obs_buf[step, ended] = np.stack(infos[\"final_obs\"][ended])\n",
     "                    final_obs = np.stack(infos[\"final_obs\"][ended])\n"
     "                    next_obs_buf[step, ended] = vn_obs(final_obs, update=False)\n"),
    # trpo.py's once-per-iteration reward scaling and observation update: off (done per step)
    ("            if args.norm_reward:\n                rewards, running_return",
     "            if False:\n                rewards, running_return"),
    ("        update_obs_norm(agent, b_obs, args.env_id, global_step)\n",
     "        # update_obs_norm: off, the observation statistics moved at every step (vn_obs)\n"),
    # evaluation (in run.finish) and the checkpoint: the per-step statistics of the end, frozen
    ("    run.finish(agent, global_step, return_norm=return_norm.state_dict())\n",
     "    agent.obs_norm = step_obs_norm if args.norm_obs else agent.obs_norm\n"
     "    run.finish(agent, global_step, return_norm=step_ret_norm.state_dict())\n"),
]


def make_variant(source: str) -> str:
    for old, new in PATCH:
        if source.count(old) != 1:
            raise SystemExit(f"trpo.py has changed: {old.strip()[:60]!r} occurs "
                             f"{source.count(old)} times, not once")
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
