"""Mutation check: make each listed one-line mistake in a copy of the repo and confirm the test suite fails.

    python tests/mutants.py                      # every mutant (a few minutes each; runs in a temporary copy)
    python tests/mutants.py --only ppo_clip      # the mutants of one file (a substring of the names)
    python tests/mutants.py --list               # what would be run

Not part of the pytest suite (it runs the suite once per mutant). A script that joins the family adds the
plausible one-line mistakes of its math and its loop to MUTANTS: (name, file, exact text, its replacement).
Exit status 1 if any mutant survives (the suite passed with the mistake in place).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MUTANTS = [
    # gae.py
    ("gae: done read as a number", "gae.py", "decay = gamma * gae_lambda * dones.logical_not().to(dtype)",
     "decay = gamma * gae_lambda * (1 - dones.to(dtype))"),
    ("gae: dones in place of terminated in the TD error", "gae.py",
     "gamma * terminated.logical_not().to(dtype) * next_values", "gamma * dones.logical_not().to(dtype) * next_values"),
    ("gae: no lambda", "gae.py", "decay = gamma * gae_lambda * dones", "decay = gamma * dones"),
    ("gae: reward-to-go ignores episode ends", "gae.py", "decay = gamma * dones.logical_not().to(rewards.dtype)",
     "decay = gamma * torch.ones_like(rewards)"),
    # ppo_clip.py
    ("ppo_clip: target-KL comparison flipped", "ppo_clip.py", "[:, 3].mean() > args.target_kl",
     "[:, 3].mean() < args.target_kl"),
    ("ppo_clip: target-KL on the mean of all epochs so far", "ppo_clip.py", "torch.stack(epoch_stats)[:, 3]",
     "torch.stack(stats + epoch_stats)[:, 3]"),
    ("ppo_clip: no learning-rate decay", "ppo_clip.py",
     'optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate', "pass"),
    ("ppo_clip: rewards divided by the variance", "ppo_clip.py",
     "rewards / torch.sqrt(return_norm.var + return_norm.eps)", "rewards / (return_norm.var + return_norm.eps)"),
    ("ppo_clip: entropy bonus sign flipped", "ppo_clip.py", "loss = pg_loss - args.ent_coef * entropy",
     "loss = pg_loss + args.ent_coef * entropy"),
    ("ppo_clip: advantages not mean-centred", "ppo_clip.py",
     "return (advantages - advantages.mean()) / (advantages.std() + 1e-8)",
     "return advantages / (advantages.std() + 1e-8)"),
    ("ppo_clip: no gradient clipping", "ppo_clip.py",
     "nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)", "pass"),
    ("ppo_clip: done = terminated + truncated", "ppo_clip.py",
     "terminated_buf, done_buf = (np.zeros((args.num_steps, args.num_envs), dtype=bool) for _ in range(2))",
     "terminated_buf, done_buf = (np.zeros((args.num_steps, args.num_envs), dtype=np.float32) for _ in range(2))"),
    ("ppo_clip: reward-scaling return not restarted", "ppo_clip.py",
     "running_return = running_return * dones[t].logical_not()", "pass"),
    ("ppo_clip: clip on the optimistic side", "ppo_clip.py",
     "return torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()",
     "return torch.min(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()"),
    ("ppo_clip: evaluation updates the observation statistics", "ppo_clip.py",
     "obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)",
     "obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device); "
     "agent.obs_norm.update(obs_t[None]) if agent.continuous else None"),
    ("ppo_clip: run directory reused", "ppo_clip.py", "os.makedirs(path)\n", "os.makedirs(path, exist_ok=True)\n"),
    ("ppo_clip: bootstrap from the reset observation", "ppo_clip.py",
     "next_obs_buf[step, ended] = np.stack(infos[\"final_obs\"][ended])", "pass"),
]


def run_mutant(name: str, path: str, old: str, new: str, pytest_args: list[str]) -> bool:
    """True if the suite fails with the mutation in place (the mutant is killed)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        for entry in os.listdir(ROOT):
            if entry.endswith(".py") or entry == "tests":
                copy = shutil.copytree if os.path.isdir(os.path.join(ROOT, entry)) else shutil.copy
                copy(os.path.join(ROOT, entry), os.path.join(tmp, entry))
        with open(os.path.join(tmp, path)) as f:
            source = f.read()
        if source.count(old) != 1:
            sys.exit(f"error: mutant {name!r}: the text to replace occurs {source.count(old)} times in {path}")
        with open(os.path.join(tmp, path), "w") as f:
            f.write(source.replace(old, new))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *pytest_args],
                              cwd=tmp, capture_output=True, text=True)
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    print(f"{'killed ' if proc.returncode else 'SURVIVED'}  {name}" + (f"  <- {failed[0][7:]}" if failed else ""),
          flush=True)
    return proc.returncode != 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutants whose name contains this")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("pytest_args", nargs="*", default=["tests"], help="what pytest runs (default: tests)")
    args = parser.parse_args()
    todo = [m for m in MUTANTS if args.only in m[0]]
    if args.list:
        print("\n".join(m[0] for m in todo))
        return
    survivors = [m[0] for m in todo if not run_mutant(*m, args.pytest_args)]
    print(f"{len(todo) - len(survivors)}/{len(todo)} mutants killed" + (f"; survived: {survivors}" if survivors else ""))
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
