"""Seed-level statistics for the comparisons with the peers (trpo.py / sb3-contrib TRPO, actor_critic.py / SB3 A2C),
from the committed results.

Each comparison is two rows of `results/<grid>.json` (a script in a grid) on one env: the final returns of their
seeds, in training (the last 100 episodes) and in evaluation (10 deterministic episodes), compared by an exact
two-sided Mann-Whitney U test (every split of the pooled seeds enumerated; ties count 1/2). A row is "ahead" or
"behind" only where p < 0.05, "level" otherwise. For HalfCheetah, whose seeds either stay on a plateau or leave it,
the seeds whose training return ends above 3000 are also counted and compared by Fisher's exact test.

    python benchmarks/compare.py        # writes results/trpo_vs_sb3_contrib_seeds.md and prints it
    python benchmarks/compare.py --a2c  # writes results/a2c_vs_sb3_seeds.md: actor_critic.py against SB3 A2C

Plain Python (no scipy): the tests are small enough to enumerate.
"""

import argparse
import itertools
import json
import os
import statistics
import sys
from math import comb

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
PLATEAU = 3000  # HalfCheetah: a seed's training return either stays below ~2000 or ends above this
# (what, (grid, script) of trpo.py's side, (grid, script) of the other side)
COMPARISONS = [
    ("`trpo.py`, zoo preset (joint KL 0.01) against sb3-contrib, zoo preset",
     ("mujoco", "trpo.py"), ("mujoco", "sb3-contrib-TRPO")),
    ("identical settings: zoo preset, sb3-contrib's KL (`--max-kl 0.06 --cg-damping 0.6`, Hopper `0.03` / `0.3`), 2 x 1024 steps",
     ("mujoco_sb3kl", "trpo.py"), ("mujoco", "sb3-contrib-TRPO")),
    ("identical settings: the same with 2 x 512 steps",
     ("mujoco_b1024", "trpo.py"), ("mujoco_b1024", "sb3-contrib-TRPO")),
    ("`trpo.py`'s best setting (2 x 512, sb3-contrib's KL) against sb3-contrib, zoo preset",
     ("mujoco_b1024", "trpo.py"), ("mujoco", "sb3-contrib-TRPO")),
    ("ablation: `trpo_sb3norm.py` (SB3's per-step normalisation) against `trpo.py`, 2 x 512",
     ("ablation_sb3norm", "trpo_sb3norm.py"), ("mujoco_b1024", "trpo.py")),
]

A2C_COMPARISONS = [
    ("identical settings: rl-baselines3-zoo's A2C on MuJoCo (1 env x 5 steps, RMSprop, constant lr 7e-4, lambda 1, "
     "no entropy bonus, observation and reward normalisation; the value loss's weight aside, docs/actor_critic.md)",
     ("mujoco_a2c", "actor_critic.py"), ("mujoco_a2c", "sb3-A2C")),
]


def mann_whitney(x: list, y: list) -> tuple[float, float]:
    """U = #{(i, j): x_i > y_j} + 1/2 #{x_i == y_j} and its exact two-sided p: the share of all C(n+m, n) ways of
    splitting the pooled values into groups of n and m whose U is at least as far from n m / 2 as the observed."""
    def u_stat(a, b):
        return sum((i > j) + 0.5 * (i == j) for i in a for j in b)
    pooled, n, centre = x + y, len(x), len(x) * len(y) / 2
    observed = u_stat(x, y)
    extreme = 0
    for chosen in itertools.combinations(range(len(pooled)), n):
        rest = set(range(len(pooled))) - set(chosen)
        u = u_stat([pooled[i] for i in chosen], [pooled[i] for i in rest])
        extreme += abs(u - centre) >= abs(observed - centre) - 1e-9
    return observed, extreme / comb(len(pooled), n)


def fisher_exact(a: int, n: int, b: int, m: int) -> float:
    """Two-sided p of Fisher's exact test for a of n against b of m: the total hypergeometric probability of the
    tables with the same margins that are no more likely than the observed one."""
    total, k = n + m, a + b
    prob = lambda i: comb(n, i) * comb(m, k - i) / comb(total, k)  # noqa: E731  (i of the k in the first group)
    observed = prob(a)
    return sum(prob(i) for i in range(max(0, k - m), min(k, n) + 1) if prob(i) <= observed * (1 + 1e-9))


def seeds_of(grid: str, script: str, env: str) -> list:
    path = os.path.join(RESULTS, f"{grid}.json")
    cells = json.load(open(path))["cells"] if os.path.isfile(path) else []
    return sorted((c for c in cells if c["finished"] and c["script"] == script and c["env"] == env),
                  key=lambda c: c["seed"])


def describe(values: list) -> str:
    return f"{statistics.mean(values):.0f} +- {statistics.pstdev(values):.0f}"


def seed_list(cells: list) -> str:
    seeds = [c["seed"] for c in cells]
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2 else \
        ", ".join(map(str, seeds))


def compare(ours: list, theirs: list) -> list:
    """One line per metric: means, U, p and the verdict."""
    lines = []
    for key, metric in (("last100_return", "training"), ("eval_return", "evaluation")):
        x, y = [c[key] for c in ours], [c[key] for c in theirs]
        u, p = mann_whitney(x, y)
        verdict = "level" if p >= 0.05 else ("ahead" if u > len(x) * len(y) / 2 else "behind")
        lines.append(f"{metric}: {describe(x)} against {describe(y)}, U {u:g} of {len(x) * len(y)}, "
                     f"p = {p:.3f}: **{verdict}**")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a2c", action="store_true", help="actor_critic.py against SB3 A2C instead")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    a2c = args.a2c
    args.out = args.out or os.path.join(RESULTS, "a2c_vs_sb3_seeds.md" if a2c else "trpo_vs_sb3_contrib_seeds.md")
    title = "actor_critic.py against SB3 A2C" if a2c else "trpo.py against sb3-contrib TRPO"
    out = [f"# {title}, seed by seed", "",
           f"`python benchmarks/compare.py{' --a2c' if a2c else ''}`, from the committed `results/*.json` (the commands, dates and code versions of",
           "every cell are in the matching `results/<grid>.md`). Exact two-sided Mann-Whitney U on the final return of",
           "each seed; mean +- std over the seeds. \"ahead\" / \"behind\" only where p < 0.05.", ""]
    for what, (grid_a, script_a), (grid_b, script_b) in A2C_COMPARISONS if a2c else COMPARISONS:
        out += [f"## {what}", "", f"`{script_a}` in `{grid_a}` against `{script_b}` in `{grid_b}`.", ""]
        for env in ENVS:
            ours, theirs = seeds_of(grid_a, script_a, env), seeds_of(grid_b, script_b, env)
            if not ours or not theirs:
                out.append(f"- {env}: not run")
                continue
            out.append(f"- {env}, seeds {seed_list(ours)} against {seed_list(theirs)}:")
            out += [f"  - {line}" for line in compare(ours, theirs)]
            if env == "HalfCheetah-v5" and not a2c:
                a = sum(c["last100_return"] > PLATEAU for c in ours)
                b = sum(c["last100_return"] > PLATEAU for c in theirs)
                out.append(f"  - off the plateau (training return above {PLATEAU}): {a} of {len(ours)} against {b} of "
                           f"{len(theirs)}, Fisher's exact p = {fisher_exact(a, len(ours), b, len(theirs)):.4f}")
        out.append("")
    text = "\n".join(out)
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
