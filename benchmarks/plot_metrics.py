"""Logged metrics of one training run against the env step, one panel per key: the plots of docs/.

    python benchmarks/plot_metrics.py RUN_DIR --keys losses/kl losses/step_size --out docs/img/npg_kl.png \
        --title "npg.py, CartPole-v1, seed 1" [--hline losses/kl=0.01]

RUN_DIR holds metrics.jsonl (runs/<run>/) or has one below it (a benchmarks/run.py cell). The training
return (charts/episodic_return, a rolling mean of 20 episodes) is always the first panel.
"""

import argparse
import glob
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common import read_jsonl  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a directory with metrics.jsonl in it or below it")
    parser.add_argument("--keys", nargs="+", required=True, help="metrics to plot, e.g. losses/kl")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default="")
    parser.add_argument("--hline", nargs="*", default=[], metavar="KEY=VALUE", help="a reference line")
    parser.add_argument("--log", nargs="*", default=[], metavar="KEY", help="keys on a log scale")
    args = parser.parse_args(argv)
    found = sorted(glob.glob(os.path.join(args.run, "**", "metrics.jsonl"), recursive=True))
    if not found:
        raise SystemExit(f"no metrics.jsonl in or below {args.run}")
    rows = read_jsonl(found[-1])
    hlines = dict(item.split("=") for item in args.hline)
    fig, axes = plt.subplots(len(args.keys) + 1, 1, figsize=(7, 2.2 * (len(args.keys) + 1)), sharex=True)
    episodes = [(r["global_step"], r["charts/episodic_return"]) for r in rows
                if r.get("charts/episodic_return") is not None]
    if episodes:
        steps, returns = np.array(episodes, dtype=float).T
        window = min(20, len(returns))
        axes[0].plot(steps[window - 1:], np.convolve(returns, np.ones(window) / window, "valid"))
    axes[0].set_ylabel("episodic return\n(mean of 20)")
    for ax, key in zip(axes[1:], args.keys):
        points = [(r["global_step"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            ax.plot(*np.array(points, dtype=float).T, lw=0.8)
        if key in hlines:
            ax.axhline(float(hlines[key]), color="k", ls="--", lw=0.8)
        if key in args.log:
            ax.set_yscale("log")
        ax.set_ylabel(key.split("/")[-1])
    axes[-1].set_xlabel("env steps")
    axes[0].set_title(args.title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
