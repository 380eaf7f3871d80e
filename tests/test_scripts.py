"""Every script end to end, briefly: the output contract, checkpoints, evaluation, tracking, bad input,
determinism. Scripts join the family by adding a line to SCRIPTS."""

import glob
import os
import re

import pytest
import torch

from conftest import only_run_dir, read_metrics

SCRIPTS = ["ppo_clip.py"]
TINY = ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "2",
        "--total-timesteps", "128", "--eval-episodes", "2"]
TRAINING_KEYS = {"charts/SPS", "charts/learning_rate", "losses/policy_loss", "losses/value_loss", "losses/entropy",
                 "losses/approx_kl", "losses/clipfrac", "losses/explained_variance"}
KEYS = {  # per script: the keys every training iteration logs
    "ppo_clip.py": TRAINING_KEYS | {"losses/kl"},
}


def import_script(script: str):
    return __import__(script[: -len(".py")])


def printed_eval(stdout: str) -> float:
    return float(re.search(r"eval/episodic_return (-?[\d.]+)", stdout).group(1))


def check_run(run_dir: str, script: str, total: int) -> list[dict]:
    metrics = read_metrics(run_dir)
    iterations = [m for m in metrics if "charts/SPS" in m]
    assert iterations and all(KEYS[script] <= m.keys() for m in iterations)
    assert iterations[-1]["global_step"] == total
    assert all(isinstance(m["global_step"], int) for m in metrics)
    episodes = [m for m in metrics if "charts/episodic_return" in m]
    assert episodes and all("charts/episodic_length" in m for m in episodes)
    assert "eval/episodic_return" in metrics[-1]
    return metrics


@pytest.mark.parametrize("script", SCRIPTS)
def test_cartpole_train_save_evaluate_and_film(script, run_script, tmp_path):
    proc = run_script(script, *TINY, "--save-model", "--exp-name", "smoke")
    assert re.search(r"step 128/128 \| SPS \d+ \| return [\d.]+ \| ETA \d+s", proc.stdout)
    run_dir = only_run_dir(tmp_path)
    metrics = check_run(run_dir, script, 128)
    for m in metrics:  # CartPole pays 1 per step: the logged return is the whole episode's
        if "charts/episodic_return" in m:
            assert m["charts/episodic_return"] == m["charts/episodic_length"] > 0
    checkpoint = torch.load(os.path.join(run_dir, "smoke.pt"), weights_only=True)
    assert checkpoint["args"]["env_id"] == "CartPole-v1" and checkpoint["model"]
    assert not glob.glob(os.path.join(run_dir, "*.tmp"))

    again = run_script(script, "--eval-checkpoint", os.path.join(run_dir, "smoke.pt"), "--eval-episodes", "2",
                       "--capture-video")
    assert printed_eval(again.stdout) == pytest.approx(metrics[-1]["eval/episodic_return"])  # same model, same episodes
    assert len(glob.glob(os.path.join(run_dir, "videos", "*.mp4"))) == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_pendulum_normalisation_is_saved_and_frozen(script, run_script, tmp_path):
    run_script(script, "--env-id", "Pendulum-v1", *TINY, "--total-timesteps", "512", "--save-model", "--exp-name", "smoke")
    run_dir = only_run_dir(tmp_path)
    metrics = check_run(run_dir, script, 512)
    checkpoint = torch.load(os.path.join(run_dir, "smoke.pt"), weights_only=True)
    assert checkpoint["args"]["norm_obs"] is True and checkpoint["args"]["norm_reward"] is True
    assert checkpoint["model"]["obs_norm.count"] > 400 and checkpoint["model"]["obs_norm.mean"].abs().sum() > 0
    # evaluation of the file uses the saved statistics, frozen: it reproduces the end-of-training evaluation
    again = run_script(script, "--eval-checkpoint", os.path.join(run_dir, "smoke.pt"), "--eval-episodes", "2")
    assert printed_eval(again.stdout) == pytest.approx(metrics[-1]["eval/episodic_return"], abs=0.01)


@pytest.mark.parametrize("script", SCRIPTS)
def test_mujoco_hopper(script, run_script, tmp_path):
    run_script(script, "--env-id", "Hopper-v5", "--num-envs", "1", "--num-steps", "64", "--num-minibatches", "4",
               "--update-epochs", "2", "--total-timesteps", "128", "--eval-episodes", "1")
    check_run(only_run_dir(tmp_path), script, 128)


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_offline_with_wandb(script, run_script, tmp_path):
    run_script(script, *TINY, "--track", "--eval-episodes", "1", env={"WANDB_MODE": "offline"})
    run_dir = only_run_dir(tmp_path)
    (offline_run,) = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*"))
    assert glob.glob(os.path.join(offline_run, "*.wandb"))
    check_run(run_dir, script, 128)


BAD_INPUT = {
    "unknown env": (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    "unsupported action space": (["--env-id", "tests.toy_envs:toy/MultiDiscreteActions-v0"], "action space MultiDiscrete"),
    "unsupported observation space": (["--env-id", "Blackjack-v1"], "observation space Tuple"),
    "zero steps": (["--total-timesteps", "0"], "--total-timesteps must be positive"),
    "budget under one batch": (["--total-timesteps", "100"], "less than one batch"),
    "negative envs": (["--num-envs", "-1"], "--num-envs must be positive"),
    "zero rollout": (["--num-steps", "0"], "--num-steps must be positive"),
    "minibatches do not divide": (["--num-minibatches", "3"], "does not divide"),
    "zero epochs": (["--update-epochs", "0"], "--update-epochs must be positive"),
    "gamma above one": (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    "negative lambda": (["--gae-lambda", "-0.1"], "--gae-lambda must be in [0, 1]"),
    "zero learning rate": (["--learning-rate", "0"], "--learning-rate must be positive"),
    "nan learning rate": (["--learning-rate", "nan"], "--learning-rate must be positive"),
    "missing checkpoint": (["--eval-checkpoint", "nope.pt"], "no such file"),
    "not a checkpoint": (["--eval-checkpoint", __file__], "is not a checkpoint"),
    "unimportable env module": (["--env-id", "no_such_module:Thing-v0"], "cannot make environment"),
    "nan loss": (["--env-id", "tests.toy_envs:toy/NaNReward-v0", "--num-envs", "1", "--num-steps", "8",
                  "--num-minibatches", "1", "--total-timesteps", "8"], "the loss became nan"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_input_is_one_line_and_nonzero(script, case, run_script, tmp_path):
    args, message = BAD_INPUT[case]
    proc = run_script(script, *args, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last, proc.stderr
    if case != "nan loss":
        assert not glob.glob(str(tmp_path / "runs" / "*")), "bad input must be rejected before anything is written"


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_same_seed_same_metrics(script, env_id, tmp_path, monkeypatch):
    module = import_script(script)
    monkeypatch.chdir(tmp_path)
    runs = []
    for name in ("first", "second"):
        module.train(module.Args(env_id=env_id, num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2,
                                 total_timesteps=192, eval_episodes=1, exp_name=name, seed=3))
        (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
        runs.append([{k: v for k, v in m.items() if k != "charts/SPS"} for m in read_metrics(run_dir)])
    assert runs[0] == runs[1]
