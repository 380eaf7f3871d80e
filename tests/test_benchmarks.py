"""The benchmark tooling (benchmarks/): the sweep's grid has presets in run.py, one sweep cell runs
end to end offline, run.py's summary (and plot.py's table) of synthetic metrics is right, a peer's
cell runs benchmarks/peers.py with the peer's settings, the sb3norm ablation still patches trpo.py,
compare.py's seed statistics and a2c_step_kl.py's per-window summary match values worked
out by hand.

    .venv/bin/python -m pytest -q tests/test_benchmarks.py
"""

import json
import os
import subprocess
import sys

import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import plot  # noqa: E402
import run  # noqa: E402


def load_sweep() -> dict:
    with open(os.path.join(ROOT, "benchmarks", "sweep.yaml")) as f:
        return yaml.safe_load(f)


def test_every_sweep_cell_has_a_preset():
    sweep = load_sweep()
    assert sweep["method"] == "grid" and os.path.isfile(os.path.join(ROOT, sweep["program"]))
    parameters = sweep["parameters"]
    assert parameters["seed"]["values"]
    for script in parameters["script"]["values"]:
        assert os.path.isfile(os.path.join(ROOT, script))
        for env in parameters["env_id"]["values"]:
            assert env in run.PRESETS[script] and env in run.BUDGETS, (script, env)


def test_one_sweep_cell_runs_offline(tmp_path):
    cell = run.Cell("ppo_clip.py", "CartPole-v1", 1)
    cmd = [sys.executable, os.path.join(ROOT, load_sweep()["program"]), f"--script={cell.script}",
           f"--env_id={cell.env}", f"--seed={cell.seed}", "--total-timesteps=512",
           f"--runs-dir={tmp_path}", "--", "--num-envs", "2", "--num-steps", "64",
           "--eval-episodes", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "offline"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = run.cell_metrics(cell.dir(str(tmp_path / "sweep")))
    assert metrics and run.is_finished(metrics)


def write_metrics(cell_dir: str, rows: list[dict], tail: str = "") -> None:
    os.makedirs(os.path.join(cell_dir, "runs", "run"))
    with open(os.path.join(cell_dir, "runs", "run", "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows) + tail)


def test_summary_of_synthetic_runs(tmp_path):
    bench = str(tmp_path / "runs" / "synthetic")
    # episode i ends at step 10 (i + 1) with return i; an iteration row every 2000 steps; then the
    # eval row
    episodes = [{"global_step": 10 * (i + 1), "charts/episodic_return": i,
                 "charts/episodic_length": 10} for i in range(1000)]
    iterations = [{"global_step": 2000 * k, "charts/SPS": 100 * k, "losses/value_loss": None}
                  for k in range(1, 6)]
    rows = sorted(episodes + iterations, key=lambda row: row["global_step"])
    write_metrics(run.Cell("ppo_clip.py", "CartPole-v1", 1).dir(bench),
                  rows + [{"global_step": 10000, "eval/episodic_return": 123.0}])
    # a run killed mid-write: 50 episodes, a null return, half a line
    write_metrics(run.Cell("ppo_clip.py", "CartPole-v1", 2).dir(bench),
                  episodes[:50] + [{"global_step": 510, "charts/episodic_return": None}],
                  tail='{"global_st')

    results = run.summarize("synthetic", bench)
    finished, unfinished = results["cells"]
    assert (finished["seed"], finished["finished"], finished["steps"],
            finished["episodes"]) == (1, True, 10000, 1000)
    assert finished["last100_return"] == np.mean(range(900, 1000))
    assert (finished["eval_return"], finished["final_sps"]) == (123.0, 500)
    # the mean of episodes i-19..i is i - 9.5, >= 475 first at i = 485
    assert finished["steps_to_threshold"] == 4860
    curve = np.array(finished["curve"])
    assert len(curve) == run.CURVE_POINTS and np.all(np.diff(curve[:, 0]) > 0)
    assert curve[0].tolist() == [30, 2.0]  # the first bin: episodes 0-4, steps 10-50
    assert abs(curve[:, 1].mean() - 499.5) < 1
    assert (unfinished["finished"], unfinished["episodes"],
            unfinished["eval_return"]) == (False, 50, None)
    assert unfinished["curve"] == [[row["global_step"], row["charts/episodic_return"]]
                                   for row in episodes[:50]]

    # plot.py's table (its PNGs need matplotlib, a benchmark-only dependency the test suite does
    # not install)
    table = plot.markdown(json.loads(json.dumps(results)), {})
    row = ("| ppo_clip.py | CartPole-v1 | 10000 | 1 (+1 unfinished) | 949.5 +- 0.0 | 123.0 +- 0.0 "
           "| >= 475: 4860 (1/1) |")
    assert row in table


def test_a_summary_keeps_the_committed_cells_whose_runs_are_elsewhere(tmp_path):
    """Raw runs stay out of git: summarising here must keep the committed cells run on another
    machine, replace a committed cell that was run again here, and keep every launch once, oldest
    first."""
    bench = str(tmp_path / "runs" / "synthetic")
    episodes = [{"global_step": 10 * (i + 1), "charts/episodic_return": i} for i in range(10)]
    write_metrics(run.Cell("ppo_clip.py", "CartPole-v1", 2).dir(bench),
                  episodes + [{"global_step": 100, "eval/episodic_return": 7.0}])
    here = {"date": "2026-02-01T00:00:00", "command": "python benchmarks/run.py --seeds 2",
            "code": "b"}
    with open(os.path.join(bench, "launches.jsonl"), "w") as f:
        f.write(json.dumps(here) + "\n")
    old = {"date": "2026-01-01T00:00:00", "command": "python benchmarks/run.py --seeds 1 2",
           "code": "a"}
    previous = {"launches": [old, here], "cells": [
        {"script": "ppo_clip.py", "env": "CartPole-v1", "seed": 2, "eval_return": -1.0},
        {"script": "ppo_clip.py", "env": "CartPole-v1", "seed": 1, "eval_return": 500.0}]}
    results = run.summarize("synthetic", bench, previous)
    assert [(c["seed"], c["eval_return"]) for c in results["cells"]] == [(1, 500.0), (2, 7.0)]
    assert results["launches"] == [old, here] and results["command"] == here["command"]
    assert results["seeds"] == [1, 2]
    nothing = str(tmp_path / "nothing")
    assert run.summarize("synthetic", nothing, previous)["cells"] == previous["cells"][::-1]


def peer_cell(tmp_path, peer: str, env: str, seed: int) -> tuple[list[str], str, dict]:
    """A peer's cell: its command, its directory and the command's flags (after the script)."""
    cell = run.Cell(peer, env, seed)
    cwd = cell.dir(str(tmp_path / "runs" / "bench"))
    cmd = run.cell_command(cell, cwd, "bench", None, [])
    assert cmd[0] == "PEERS_PYTHON"
    peers_py = os.path.join(ROOT, "benchmarks", "peers.py")
    assert os.path.normpath(os.path.join(cwd, cmd[1])) == peers_py
    flags = dict(zip(cmd[2::2], cmd[3::2]))
    assert len(cmd) == 2 + 2 * len(flags)  # flags and values only
    assert flags["--env-id"] == env and flags["--seed"] == str(seed)
    assert flags["--exp-name"] == "bench" and flags["--total-timesteps"] == str(run.BUDGETS[env])
    return cmd, cwd, flags


def refused(peer: str, env: str) -> str:
    """check_grid's one-line error for a peer on an env it has no settings for."""
    try:
        run.check_grid([peer], [env], None)
    except SystemExit as e:
        return str(e)
    raise AssertionError(f"{peer} without settings for {env} was accepted")


def test_a_peer_cell_runs_peers_py_in_the_peers_python(tmp_path, monkeypatch):
    """A cell named after a peer (run.PEERS) runs benchmarks/peers.py --exp-name with the peer's
    settings for the env, under the peers' interpreter, and its reproduce line names that
    interpreter $PEERS_PYTHON (no path of this machine); a peer without settings for an env is
    refused before anything runs."""
    cmd, cwd, flags = peer_cell(tmp_path, "sb3-contrib-TRPO", "Hopper-v5", 3)
    assert flags["--algo"] == "trpo"
    assert json.loads(flags["--settings"]) == run.PEERS["sb3-contrib-TRPO"][1]["Hopper-v5"]
    line = run.reproduce_line(cmd, cwd)
    assert f"&& $PEERS_PYTHON {cmd[1]} --algo trpo " in line and run.PEERS_PYTHON not in line

    monkeypatch.setattr(run, "PEERS_PYTHON", sys.executable)  # peers.py --versions needs no SB3
    assert run.run_cell(["PEERS_PYTHON", cmd[1], "--versions"], cwd) == 0
    with open(os.path.join(cwd, "output.log")) as f:
        assert "torch" in json.loads(f.read())
    assert "no settings for the peer sb3-contrib-TRPO on CartPole-v1" in refused(
        "sb3-contrib-TRPO", "CartPole-v1")


def test_an_sb3_a2c_cell_runs_peers_py_with_the_zoo_settings(tmp_path):
    """The peer sb3-A2C runs benchmarks/peers.py --algo a2c with rl-baselines3-zoo's a2c.yml
    settings on each MuJoCo env (`normalize: true`: VecNormalize of observations and rewards,
    gamma 0.99; one env; SB3's A2C defaults otherwise), its reproduce line under $PEERS_PYTHON;
    an env it has no settings for is refused before anything runs."""
    zoo = {"n_envs": 1, "normalize": {"norm_obs": True, "norm_reward": True, "gamma": 0.99}}
    for seed, env in enumerate(("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"), start=2):
        cmd, cwd, flags = peer_cell(tmp_path, "sb3-A2C", env, seed)
        assert flags["--algo"] == "a2c"
        assert json.loads(flags["--settings"]) == run.PEERS["sb3-A2C"][1][env] == zoo
        line = run.reproduce_line(cmd, cwd)
        assert f"&& $PEERS_PYTHON {cmd[1]} --algo a2c --env-id {env} " in line
        assert run.PEERS_PYTHON not in line
    for env in ("CartPole-v1", "Pendulum-v1"):
        assert f"no settings for the peer sb3-A2C on {env}" in refused("sb3-A2C", env)


def test_the_sb3norm_ablation_applies_to_trpo_and_runs(tmp_path):
    """benchmarks/sb3norm_ablation.py patches trpo.py's current text (a stale anchor is a one-line
    error, not a silently different variant), and the variant trains and evaluates on a
    continuous env, where it normalises."""
    import sb3norm_ablation

    with open(os.path.join(ROOT, "trpo.py")) as f:
        source = f.read()
    variant = sb3norm_ablation.make_variant(source)
    assert "step_obs_norm.update(t)" in variant and "agent.obs_norm = step_obs_norm" in variant
    try:
        sb3norm_ablation.make_variant(source.replace(sb3norm_ablation.PATCH[0][0], ""))
    except SystemExit as e:
        assert "trpo.py has changed" in str(e)
    else:
        raise AssertionError("a patch whose anchor is gone was applied")
    script = tmp_path / "trpo_sb3norm.py"
    script.write_text(variant)
    proc = subprocess.run([sys.executable, str(script), "--env-id", "Pendulum-v1", "--num-steps",
                           "64", "--total-timesteps", "256", "--eval-episodes", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (metrics,) = tmp_path.glob("runs/*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert sum("losses/kl" in row for row in rows) == 2 and "eval/episodic_return" in rows[-1]


def test_the_seed_statistics_of_compare_py():
    """benchmarks/compare.py's exact tests against values worked out by hand: Mann-Whitney's
    two-sided p is the share of splits of the pooled seeds at least as extreme (x = [3, 4],
    y = [1, 2]: U 4, 2 of the 6 splits, U 0 and U 4; all tied: U at its centre, p 1); Fisher's
    exact p sums the tables no more likely than the observed (8 of 8 against 1 of 8: the two
    extreme tables, 8 / C(16, 9) each; 3 of 8 against 8 of 8: 56 / C(16, 11) each)."""
    import compare

    assert compare.mann_whitney([3, 4], [1, 2]) == (4, 2 / 6)
    assert compare.mann_whitney([1, 2], [3, 4]) == (0, 2 / 6)
    assert compare.mann_whitney([1, 1], [1, 1]) == (2, 1.0)
    assert compare.mann_whitney([1, 2, 3], [4, 5, 6, 7]) == (0, 2 / 35)
    assert abs(compare.fisher_exact(8, 8, 1, 8) - 16 / 11440) < 1e-12
    assert abs(compare.fisher_exact(3, 8, 8, 8) - 112 / 4368) < 1e-12
    assert abs(compare.fisher_exact(4, 8, 4, 8) - 1.0) < 1e-12


def test_a2c_step_kl_windows_summarise_each_window_by_hand():
    import a2c_step_kl

    # window 1 (steps 1-10): KLs 0.5, 2.0, 0.1, 0.2; window 2 (11-20): none; window 3: one KL of 3.0
    pairs = np.array([[5, 0.5], [10, 2.0], [3, 0.1], [7, 0.2], [25, 3.0]])
    cells = a2c_step_kl.windows(pairs, window=10, total=30)
    p99 = np.quantile([0.5, 2.0, 0.1, 0.2], 0.99)
    assert cells == [f"0.700 / {p99:.2f} / 2.0 / 25.0 %", "n/a", "3.000 / 3.00 / 3.0 / 100.0 %"]
