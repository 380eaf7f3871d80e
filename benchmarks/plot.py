"""Learning curves and a results table from a results file of run.py.

    python benchmarks/plot.py benchmarks/results/classic.json

Writes, next to the JSON, <name>_<env>.png per env (one curve per script: each finished seed's learning curve
interpolated onto a common grid of env steps, their mean, and the min-max band over seeds) and <name>.md: per
script and env, mean +- std over finished seeds (population) of the last 100 training episodes' return and of
the final evaluation, the steps each seed took to reach the env's threshold (median, and how many seeds reached
it), wall time and SPS per seed; with the command, date, machine and code version that produced them.
"""

import json
import os
import sys
from collections import defaultdict

import numpy as np

GRID_POINTS = 200


def groups(results: dict) -> dict:
    """(script, env) -> the finished cells, and the unfinished ones, of that pair."""
    found = defaultdict(lambda: ([], []))
    for cell in results["cells"]:
        found[cell["script"], cell["env"]][0 if cell["finished"] else 1].append(cell)
    return found


def mean_band(cells: list[dict]):
    """Common step grid over the seeds' shared range, and the mean, min and max of the interpolated curves."""
    curves = [np.array(cell["curve"], dtype=float).T for cell in cells if len(cell["curve"]) >= 2]
    if not curves:
        return None
    grid = np.linspace(max(steps[0] for steps, _ in curves), min(steps[-1] for steps, _ in curves), GRID_POINTS)
    ys = np.array([np.interp(grid, steps, returns) for steps, returns in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0), len(curves)


def plot_env(results: dict, env: str, path: str) -> None:
    import matplotlib  # benchmark-only (benchmarks/requirements.txt): the tables need no plotting library

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (script, cell_env), (finished, _) in groups(results).items():
        if cell_env == env and (band := mean_band(finished)):
            grid, mean, low, high, seeds = band
            (line,) = ax.plot(grid, mean, linewidth=1.5, label=f"{script} ({seeds} seed{'' if seeds == 1 else 's'})")
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if (threshold := results["thresholds"].get(env)) is not None:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold ({threshold})")
    ax.set(xlabel="environment steps", ylabel="training episodic return",
           title=f"{env}: mean over seeds, min-max band ({results['name']})")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mean_std(values: list) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.1f} +- {np.std(values):.1f}" if values else "n/a"


def threshold_cell(results: dict, env: str, cells: list[dict]) -> str:
    if env not in results["thresholds"] or not cells:
        return "n/a"
    reached = [c["steps_to_threshold"] for c in cells if c["steps_to_threshold"] is not None]
    median = f"{np.median(reached):.0f}" if reached else "not reached"
    return f">= {results['thresholds'][env]}: {median} ({len(reached)}/{len(cells)})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def table_row(results: dict, script: str, env: str, finished: list[dict], unfinished: list[dict]) -> str:
    seeds = " ".join(str(c["seed"]) for c in finished) or "none"
    seeds += f" (+{len(unfinished)} unfinished)" if unfinished else ""
    steps = " / ".join(sorted({str(c["steps"]) for c in finished})) or "n/a"
    walls = [c["wall_time_s"] for c in finished if c["wall_time_s"] is not None]
    sps = [c["final_sps"] for c in finished if c["final_sps"] is not None]
    return (f"| {script} | {env} | {steps} | {seeds} | {mean_std([c['last100_return'] for c in finished])} | "
            f"{mean_std([c['eval_return'] for c in finished])} | {threshold_cell(results, env, finished)} | "
            f"{duration(np.mean(walls) if walls else None)} | {f'{np.mean(sps):.0f}' if sps else 'n/a'} |")


def code_text(code: dict) -> str:
    return code["commit"] + (f" ({', '.join(code['modified'])} modified)" if code["modified"] else "")


def markdown(results: dict, pngs: dict) -> str:
    machine = results["machine"]
    jobs = " or ".join(sorted({str(launch["jobs"]) for launch in results["launches"]})) or "an unrecorded number of"
    lines = [f"# Benchmark `{results['name']}`", "",
             f"- command (from the repo root): `{results['command'] or 'not recorded'}`",
             f"- summarised {results['date']}; code {code_text(results['code'])}",
             f"- machine: {machine['cpu']}, nproc {machine['nproc']}, Python {machine['python']}, "
             f"torch {machine['torch']}, Gymnasium {machine['gymnasium']}, NumPy {machine['numpy']}"]
    cpus = {launch["machine"]["cpu"] for launch in results["launches"] if launch.get("machine")}
    where = (lambda launch: f" on {launch['machine']['cpu']}") if len(cpus) > 1 else (lambda launch: "")
    lines += [f"- launch {launch['date']}{where(launch)}, code {code_text(launch['code'])}: {launch['cells_run']} "
              f"cell(s), `{launch['command']}`"
              for launch in results["launches"][:-1]]  # earlier launches, when a grid was resumed or extended
    if len(cpus) > 1:
        lines.append(f"- the cells ran on {len(cpus)} machines: compare wall time and SPS only within one")
    lines += ["", "Over finished seeds, mean +- std (population). Returns: the last 100 training episodes, and the "
              "final deterministic evaluation. Steps to threshold: per seed, the first step at which the mean of "
              f"the last {results['threshold_window']} training episodes reaches it; the median over the seeds "
              f"that did, and how many did. Wall time and SPS: per seed, each launch running {jobs} cell(s) at once; "
              "launches may have overlapped, so other runs may have shared the machine (use speed.py for speed).", "",
              "| script | env | steps | seeds | last 100 training episodes | final eval | steps to threshold | "
              "wall time | SPS |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    lines += [table_row(results, script, env, *cells) for (script, env), cells in sorted(groups(results).items())]
    lines += [""] + [f"![{env}]({os.path.basename(png)})" for env, png in pngs.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.exit(__doc__)
    with open(argv[0]) as f:
        results = json.load(f)
    base = os.path.join(os.path.dirname(argv[0]), results["name"])
    pngs = {env: f"{base}_{env}.png" for env in results["envs"]}
    for env, png in pngs.items():
        plot_env(results, env, png)
    text = markdown(results, pngs)
    with open(base + ".md", "w") as f:
        f.write(text)
    print(text + f"\nwrote {os.path.relpath(base)}.md and {os.path.relpath(base)}_<env>.png for {len(pngs)} env(s)")


if __name__ == "__main__":
    main(sys.argv[1:])
