"""ppo_kl.py's adaptive penalty over one run: the KL after each update, the target band of the beta rule, and
the beta used in each update (log scales).

    python benchmarks/plot_kl.py benchmarks/runs/classic/ppo_kl.py/CartPole-v1/seed1 --title "CartPole-v1, seed 1"

Reads the run's runs/*/metrics.jsonl below the given directory; writes benchmarks/results/ppo_kl_beta_<name>.png.
"""

import argparse
import glob
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, read_jsonl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a cell directory of benchmarks/run.py (or any directory holding runs/*/metrics.jsonl)")
    parser.add_argument("--title", default="")
    parser.add_argument("--kl-target", type=float, default=0.01)
    parser.add_argument("--name", default="", help="suffix of the PNG (default: the title, simplified)")
    args = parser.parse_args()
    paths = glob.glob(os.path.join(args.run, "runs", "*", "metrics.jsonl")) + glob.glob(os.path.join(args.run, "metrics.jsonl"))
    if len(paths) != 1:
        sys.exit(f"error: expected one metrics.jsonl under {args.run}, found {len(paths)}")
    rows = [r for r in read_jsonl(paths[0]) if "losses/kl_coef" in r]
    steps = [r["global_step"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.semilogy(steps, [r["losses/kl"] for r in rows], linewidth=0.8, label="d = KL(pi_old || pi_new) after the update")
    top.axhspan(args.kl_target / 1.5, 1.5 * args.kl_target, color="green", alpha=0.2, label="beta unchanged")
    top.set(ylabel="KL")
    top.legend(fontsize=8)
    bottom.semilogy(steps, [r["losses/kl_coef"] for r in rows], linewidth=0.8, color="tab:red")
    bottom.set(xlabel="environment steps", ylabel="beta used in the update")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.set_title(f"ppo_kl.py, adaptive KL penalty: {args.title}")
    fig.tight_layout()
    name = args.name or "".join(c if c.isalnum() else "_" for c in args.title).strip("_").lower() or "run"
    out = os.path.join(RESULTS, f"ppo_kl_beta_{name}.png")
    fig.savefig(out, dpi=100)
    print(f"wrote {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
