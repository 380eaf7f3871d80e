"""Every script end to end, briefly: the output contract, checkpoints, evaluation, tracking, bad
input, determinism. A script joins the family by existing: its math tests live in
tests/test_<script>.py, which also defines SMOKE = {"tiny": flags of a CartPole run of 128 steps,
"keys": the keys every iteration logs, "bad_input": {case: (flags, expected message)} for its own
flags}."""

import glob
import importlib
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import tyro

from conftest import ROOT, only_run_dir, read_metrics

LADDER = [
    "reinforce.py",
    "vpg_baseline.py",
    "actor_critic.py",
    "npg.py",
    "trpo.py",
    "ppo_kl.py",
    "ppo_clip.py",
]
SCRIPTS = [script for script in LADDER if os.path.isfile(os.path.join(ROOT, script))]
SMOKE = {script: importlib.import_module(f"test_{script[:-3]}").SMOKE for script in SCRIPTS}


def import_script(script: str):
    return __import__(script[: -len(".py")])


def printed_eval(stdout: str) -> float:
    return float(re.search(r"eval/episodic_return (-?[\d.]+)", stdout).group(1))


def tiny(script: str) -> list[str]:
    return SMOKE[script]["tiny"]


def check_run(run_dir: str, script: str) -> list[dict]:
    metrics = read_metrics(run_dir)
    iterations = [m for m in metrics if "charts/SPS" in m]
    assert iterations and all(SMOKE[script]["keys"] <= m.keys() for m in iterations)
    steps = [m["global_step"] for m in iterations]
    assert (
        all(isinstance(m["global_step"], int) for m in metrics)
        and steps == sorted(steps)
        and steps[0] > 0
    )
    episodes = [m for m in metrics if "charts/episodic_return" in m]
    assert episodes and all("charts/episodic_length" in m for m in episodes)
    assert "eval/episodic_return" in metrics[-1]
    return metrics


@pytest.mark.parametrize("script", SCRIPTS)
def test_cartpole_train_save_evaluate_and_film(script, run_script, tmp_path, monkeypatch):
    proc = run_script(script, *tiny(script), "--save-model", "--exp-name", "smoke", "--seed", "7")
    assert re.search(r"step \d+/128 \| SPS \d+ \| return [\d.]+ \| ETA \d+s", proc.stdout)
    run_dir = only_run_dir(tmp_path)
    assert f"run directory: {os.path.relpath(run_dir, tmp_path)}" in proc.stdout.splitlines()[0]
    metrics = check_run(run_dir, script)
    printed = [int(step) for step in re.findall(r"^step (\d+)/", proc.stdout, re.MULTILINE)]
    iterations = [m["global_step"] for m in metrics if "charts/SPS" in m]
    assert printed == iterations  # one progress line per iteration
    for m in metrics:  # CartPole pays 1 per step: the logged return is the whole episode's
        if "charts/episodic_return" in m:
            assert m["charts/episodic_return"] == m["charts/episodic_length"] > 0
    checkpoint = torch.load(os.path.join(run_dir, "smoke.pt"), weights_only=True)
    assert checkpoint["args"]["env_id"] == "CartPole-v1" and checkpoint["model"]
    assert not glob.glob(os.path.join(run_dir, "*.tmp"))

    # the saved seed (7) is the default: the same model replays the same episodes
    monkeypatch.delenv(
        "SDL_VIDEODRIVER", raising=False
    )  # set in this process by importing the scripts
    again = run_script(
        script,
        "--eval-checkpoint",
        os.path.join(run_dir, "smoke.pt"),
        "--eval-episodes",
        "2",
        "--capture-video",
        env={"XDG_RUNTIME_DIR": ""},
    )  # unset: SDL would print "error: XDG_..."
    assert not [line for line in again.stderr.splitlines() if line.startswith("error:")], (
        again.stderr
    )
    assert printed_eval(again.stdout) == pytest.approx(metrics[-1]["eval/episodic_return"])
    assert len(glob.glob(os.path.join(run_dir, "videos", "*.mp4"))) == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_pendulum_normalisation_is_saved_and_frozen(script, run_script, tmp_path):
    run_script(
        script,
        "--env-id",
        "Pendulum-v1",
        *tiny(script),
        "--total-timesteps",
        "512",
        "--save-model",
        "--exp-name",
        "smoke",
    )
    run_dir = only_run_dir(tmp_path)
    metrics = check_run(run_dir, script)
    checkpoint = torch.load(os.path.join(run_dir, "smoke.pt"), weights_only=True)
    assert checkpoint["args"]["norm_obs"] is True and checkpoint["args"]["norm_reward"] is True
    assert (
        checkpoint["model"]["obs_norm.count"] > 400
        and checkpoint["model"]["obs_norm.mean"].abs().sum() > 0
    )
    # evaluation of the file uses the saved statistics, frozen: it reproduces the end-of-training
    # evaluation, and training flags given with it change nothing (and it says so)
    again = run_script(
        script,
        "--eval-checkpoint",
        os.path.join(run_dir, "smoke.pt"),
        "--eval-episodes",
        "2",
        "--env-id",
        "CartPole-v1",
        "--no-norm-obs",
        "--gamma",
        "0.5",
    )
    assert printed_eval(again.stdout) == pytest.approx(
        metrics[-1]["eval/episodic_return"], abs=0.01
    )
    assert (
        "note: --gamma, --norm-obs ignored: the model is evaluated as it was trained (Pendulum-v1)"
        in again.stdout
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_mujoco_hopper(script, run_script, tmp_path):
    run_script(script, *tiny(script), "--env-id", "Hopper-v5", "--eval-episodes", "1")
    check_run(only_run_dir(tmp_path), script)


@pytest.mark.parametrize("script", SCRIPTS)
def test_discrete_observations_are_one_hot(script, run_script, tmp_path):
    """Blackjack-v1 observes Tuple(Discrete(32), Discrete(11), Discrete(2)): the policy gets the 45
    concatenated one-hots, in training and in both evaluations (at the end of training and of the
    saved checkpoint)."""
    run_script(
        script,
        *tiny(script),
        "--env-id",
        "Blackjack-v1",
        "--eval-episodes",
        "2",
        "--save-model",
        "--exp-name",
        "bj",
    )
    run_dir = only_run_dir(tmp_path)
    check_run(run_dir, script)
    checkpoint = os.path.join(run_dir, "bj.pt")
    assert (
        torch.load(checkpoint, weights_only=True)["model"]["actor.0.weight"].shape[1] == 32 + 11 + 2
    )
    again = run_script(script, "--eval-checkpoint", checkpoint, "--eval-episodes", "2")
    assert "eval/episodic_return" in again.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_offline_with_wandb(script, run_script, tmp_path):
    run_script(
        script, *tiny(script), "--track", "--eval-episodes", "1", env={"WANDB_MODE": "offline"}
    )
    run_dir = only_run_dir(tmp_path)
    (offline_run,) = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*"))
    assert glob.glob(os.path.join(offline_run, "*.wandb"))
    check_run(run_dir, script)


BAD_INPUT = {  # in every script
    "unknown env": (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    "unsupported action space": (
        ["--env-id", "tests.toy_envs:toy/MultiDiscreteActions-v0"],
        "action space MultiDiscrete",
    ),
    "unsupported observation space": (
        ["--env-id", "tests.toy_envs:toy/SequenceObservations-v0"],
        "observation space Sequence",
    ),
    "unimportable env module": (["--env-id", "no_such_module:Thing-v0"], "cannot make environment"),
    "zero steps": (["--total-timesteps", "0"], "--total-timesteps must be positive"),
    "negative envs": (["--num-envs", "-1"], "--num-envs must be positive"),
    "gamma above one": (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    "zero learning rate": (["--learning-rate", "0"], "--learning-rate must be positive"),
    "nan learning rate": (["--learning-rate", "nan"], "--learning-rate must be positive"),
    "infinite learning rate": (["--learning-rate", "inf"], "--learning-rate must be positive"),
    "negative seed": (["--seed", "-1"], "--seed must be in [0, 2**32)"),
    "seed too large": (["--seed", str(2**32)], "--seed must be in [0, 2**32)"),
    "path in exp name": (["--exp-name", "a/b"], "--exp-name 'a/b'"),
    "dot exp name": (["--exp-name", ".."], "--exp-name '..'"),
    "negative eval episodes": (["--eval-episodes", "-1"], "--eval-episodes must be >= 0"),
    "missing checkpoint": (["--eval-checkpoint", "nope.pt"], "no such file"),
    "not a checkpoint": (["--eval-checkpoint", __file__], "is not a checkpoint"),
    "nan loss": (["--env-id", "tests.toy_envs:toy/NaNReward-v0"], "the update became non-finite"),
    "infinite observation": (
        ["--env-id", "tests.toy_envs:toy/InfObservation-v0"],
        "returned a non-finite observation",
    ),
    "empty box actions": (
        ["--env-id", "tests.toy_envs:toy/EmptyBoxActions-v0"],
        "action space Box",
    ),
    "integer box actions": (
        ["--env-id", "tests.toy_envs:toy/IntBoxActions-v0"],
        "action space Box(0, 4, (1,), int64)",
    ),
    "no rgb frames": (
        ["--env-id", "tests.toy_envs:toy/BadFrames-v0", "--capture-video"],
        "draws no RGB frames",
    ),
}
FAILS_IN_TRAINING = ("became non-finite", "non-finite observation")  # they keep their run directory


def cli(script: str, *argv: str):
    """A script's command line run in this process (what `python SCRIPT ARGV` does, without the
    interpreter's start-up): returns what it exited with (an error message or a code), None if it
    finished."""
    module = import_script(script)
    args = tyro.cli(module.Args, args=list(argv))
    try:
        module.evaluate_checkpoint(args) if args.eval_checkpoint else module.train(args)
    except SystemExit as e:
        return e.code
    return None


@pytest.mark.parametrize(
    "script, case", [(s, c) for s in SCRIPTS for c in {**BAD_INPUT, **SMOKE[s]["bad_input"]}]
)
def test_bad_input_is_one_line(script, case, tmp_path, monkeypatch):
    args, message = {**BAD_INPUT, **SMOKE[script]["bad_input"]}[case]
    monkeypatch.chdir(tmp_path)
    exited_with = cli(script, *tiny(script), *args)  # the last of a repeated flag wins
    assert (
        isinstance(exited_with, str)
        and exited_with.startswith("error:")
        and "\n" not in exited_with
    ), exited_with
    assert message in exited_with
    if not any(reason in message for reason in FAILS_IN_TRAINING):
        assert not glob.glob(str(tmp_path / "runs" / "*")), (
            "bad input must be rejected before anything is written"
        )


@pytest.mark.parametrize("script", SCRIPTS)
def test_capture_video_without_moviepy_is_refused_at_the_start(script, tmp_path, monkeypatch):
    """gymnasium's RecordVideo imports moviepy only when the final evaluation films, after the whole
    training run: a missing moviepy must be a one-line error before anything is written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "moviepy", None)  # `import moviepy` now raises ImportError
    exited_with = cli(script, *tiny(script), "--capture-video")
    assert isinstance(exited_with, str) and exited_with.startswith(
        "error: --capture-video needs moviepy"
    )
    assert not glob.glob(str(tmp_path / "runs" / "*"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_input_exits_nonzero_without_traceback(script, run_script):
    """The same errors from a real interpreter: exit status 1, the message as the one line on
    stderr."""
    proc = run_script(script, "--learning-rate", "nan", check=False)
    assert_one_line_error(proc, "--learning-rate must be positive")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def assert_one_line_error(proc, message: str) -> None:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_unwritable_runs_directory_is_one_line(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("a file where the runs/ directory should be")
    exited_with = cli(script, *tiny(script))
    assert (
        exited_with.startswith("error: cannot create the run directory") and "\n" not in exited_with
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_broken_checkpoints_are_one_line(script, tmp_path, monkeypatch):
    """A checkpoint of another env (shapes differ) or with a key missing: a one-line error, no
    traceback."""
    monkeypatch.chdir(tmp_path)
    assert (
        cli(script, *tiny(script), "--save-model", "--exp-name", "ok", "--eval-episodes", "0")
        is None
    )
    checkpoint = torch.load(glob.glob(str(tmp_path / "runs" / "*" / "ok.pt"))[0], weights_only=True)
    other_env = {**checkpoint, "args": {**checkpoint["args"], "env_id": "Acrobot-v1"}}
    missing_key = {k: v for k, v in checkpoint.items() if k != "model"}
    for name, broken in (("other_env", other_env), ("missing_key", missing_key)):
        torch.save(broken, tmp_path / f"{name}.pt")
        exited_with = cli(script, "--eval-checkpoint", f"{name}.pt")
        assert (
            exited_with.startswith(f"error: {name}.pt is not a checkpoint of {script}")
            and "\n" not in exited_with
        )
    assert "size mismatch" in cli(
        script, "--eval-checkpoint", "other_env.pt"
    )  # the detail, not just its heading


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_file_that_is_not_a_checkpoint_is_one_short_safe_line(script, tmp_path, monkeypatch):
    """--eval-checkpoint on a text file, on a pickle of an object that is no tensor (which torch's
    weights_only loader refuses with the advice to load it with weights_only=False, i.e. to run the
    file's code) and on a lone tensor: one line under 200 characters that says what the file is not,
    and never that advice."""
    import datetime

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.pt").write_text("not a model\n" * 100)
    torch.save({"model": datetime.date(2026, 1, 1), "args": {}}, tmp_path / "code.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    for name in ("notes.pt", "code.pt", "tensor.pt"):
        exited_with = cli(script, "--eval-checkpoint", name)
        assert exited_with.startswith(f"error: {name} is not a checkpoint of {script}"), exited_with
        assert "\n" not in exited_with and len(exited_with) < 200, exited_with
        assert "weights_only" not in exited_with, exited_with


def test_a_checkpoint_of_another_script_is_refused(tmp_path, monkeypatch):
    """npg.py and trpo.py share the network and most flags: trpo.py must refuse npg.py's file by
    name, not evaluate it as its own; a checkpoint written before the "script" key existed still
    loads."""
    monkeypatch.chdir(tmp_path)
    assert (
        cli("npg.py", *tiny("npg.py"), "--save-model", "--exp-name", "npg", "--eval-episodes", "0")
        is None
    )
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "npg.pt"))
    exited_with = cli("trpo.py", "--eval-checkpoint", path)
    assert (
        exited_with.startswith(f"error: {path} is not a checkpoint of trpo.py")
        and "saved by npg.py" in exited_with
    )
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint.pop("script") == "npg.py"
    torch.save(checkpoint, tmp_path / "old.pt")
    assert cli("npg.py", "--eval-checkpoint", "old.pt", "--eval-episodes", "1") is None


@pytest.mark.parametrize("script", SCRIPTS)
def test_normalisation_switches(script, run_script, tmp_path, monkeypatch):
    """--norm-obs / --no-norm-obs (and the reward twins) are plain switches; the default depends on
    the env."""
    assert "--norm-obs, --no-norm-obs" in run_script(script, "--help").stdout
    monkeypatch.chdir(tmp_path)
    cli(
        script,
        *tiny(script),
        "--env-id",
        "Pendulum-v1",
        "--no-norm-obs",
        "--no-norm-reward",
        "--save-model",
        "--exp-name",
        "off",
        "--eval-episodes",
        "0",
    )
    cli(
        script,
        *tiny(script),
        "--norm-obs",
        "--norm-reward",
        "--save-model",
        "--exp-name",
        "on",
        "--eval-episodes",
        "0",
    )
    saved = {
        name: torch.load(
            glob.glob(str(tmp_path / "runs" / "*" / f"{name}.pt"))[0], weights_only=True
        )["args"]
        for name in ("off", "on")
    }
    assert (saved["off"]["norm_obs"], saved["off"]["norm_reward"]) == (False, False)
    assert (saved["on"]["norm_obs"], saved["on"]["norm_reward"]) == (True, True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_keeps_the_metrics_and_the_model(script, tmp_path):
    """Ctrl-C mid-run: no traceback, a non-zero exit, the metrics so far on disk and the model saved
    as asked."""
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, script),
            "--total-timesteps",
            "10000000",
            "--save-model",
            "--exp-name",
            "stopped",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    for line in proc.stdout:  # wait for the first finished iteration
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    assert "interrupted at step" in stderr.strip().splitlines()[-1]
    run_dir = only_run_dir(tmp_path)
    assert any("charts/SPS" in m for m in read_metrics(run_dir))
    assert "model saved to" in stdout and os.path.isfile(os.path.join(run_dir, "stopped.pt"))


@pytest.mark.parametrize(
    "script", [s for s in SCRIPTS if "losses/explained_variance" in SMOKE[s]["keys"]]
)
def test_nan_statistics_are_logged_as_null(script, tmp_path, monkeypatch):
    """Constant returns (reward 1, gamma 0) make the explained variance undefined: null in strict
    JSON."""
    monkeypatch.chdir(tmp_path)
    cli(
        script,
        *tiny(script),
        "--env-id",
        "tests.toy_envs:toy/Count-v0",
        "--gamma",
        "0",
        "--eval-episodes",
        "0",
    )
    rows = [m for m in read_metrics(only_run_dir(tmp_path)) if "losses/explained_variance" in m]
    assert rows and all(m["losses/explained_variance"] is None for m in rows)


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_env_without_render_mode_trains_and_is_evaluated(script, tmp_path, monkeypatch):
    """Many envs' constructors take no render_mode: evaluation must not pass one when it films
    nothing. Catches: gym.make(env_id, render_mode=None) in evaluate (a TypeError after the whole
    training run)."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    monkeypatch.chdir(tmp_path)
    assert (
        cli(script, *tiny(script), "--env-id", "toy/NoRenderMode-v0", "--eval-episodes", "1")
        is None
    )
    assert "eval/episodic_return" in read_metrics(only_run_dir(tmp_path))[-1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_evaluation_of_an_env_without_time_limit_ends(script, monkeypatch):
    """An env with no time limit may never end an episode: evaluation cuts it at EVAL_MAX_STEPS
    instead of hanging. Catches: evaluate() without the cap (an alarm fails the test after 30 s)."""
    import gymnasium as gym
    import toy_envs  # noqa: F401  (registers the toy envs)

    def hung(signum, frame):
        raise TimeoutError("evaluation did not end")

    module = import_script(script)
    monkeypatch.setattr(module, "EVAL_MAX_STEPS", 50)
    agent = module.Agent(1, gym.spaces.Discrete(2), module.Args(norm_obs=False))
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        assert module.evaluate(agent, "toy/Endless-v0", 2, 0) == [50.0, 50.0]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("script", SCRIPTS)
def test_tracking_that_cannot_start_is_one_line(script, tmp_path, monkeypatch):
    """wandb not logged in (or offline without WANDB_MODE): one line naming the fix, not wandb's
    traceback."""
    import wandb

    def no_login(*args, **kwargs):
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.")

    monkeypatch.setattr(wandb, "init", no_login)
    monkeypatch.chdir(tmp_path)
    exited_with = cli(script, *tiny(script), "--track")
    assert (
        exited_with.startswith("error: --track: wandb did not start (UsageError: No API key")
        and "\n" not in exited_with
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_checkpoint_that_cannot_be_written_is_one_line(script, tmp_path, monkeypatch):
    """Disk full at the end of a run: one line, and no half-written .tmp file left behind."""

    def disk_full(obj, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise RuntimeError("unexpected pos 3648 vs 3536")

    monkeypatch.setattr(torch, "save", disk_full)
    monkeypatch.chdir(tmp_path)
    exited_with = cli(script, *tiny(script), "--save-model", "--eval-episodes", "0")
    assert (
        exited_with.startswith("error: cannot write the checkpoint")
        and "unexpected pos" in exited_with
    )
    assert not glob.glob(str(tmp_path / "runs" / "*" / "*.pt*"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_second_ctrl_c_during_the_checkpoint_write_leaves_no_tmp(script, tmp_path, monkeypatch):
    """The first Ctrl-C stops training and saves; a second one during the write raises
    KeyboardInterrupt there: the half-written .tmp must not stay behind."""

    def interrupted(obj, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cli(script, *tiny(script), "--save-model", "--eval-episodes", "0")
    assert glob.glob(str(tmp_path / "runs" / "*")) and not glob.glob(
        str(tmp_path / "runs" / "*" / "*.pt*")
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_discrete_actions_that_do_not_start_at_zero(script, tmp_path, monkeypatch):
    """Discrete(3, start=-1): training and the final evaluation give the env the actions -1, 0 and 1
    (the toy env raises on an action outside its space). Catches: the categorical's index i sent as
    the action (2 is not one)."""
    import gymnasium as gym
    import toy_envs  # noqa: F401  (registers the toy envs)

    env_class = gym.spec(
        "toy/OffsetDiscrete-v0"
    ).entry_point  # the class registered last, whichever import it was
    monkeypatch.setattr(env_class, "actions_seen", set())
    monkeypatch.chdir(tmp_path)
    assert (
        cli(script, *tiny(script), "--env-id", "toy/OffsetDiscrete-v0", "--eval-episodes", "2")
        is None
    )
    assert env_class.actions_seen == {-1, 0, 1}
    # Evaluation alone, with a policy whose argmax is the index 0: the env must get the action -1.
    module = import_script(script)
    agent = module.Agent(1, gym.spaces.Discrete(3, start=-1), module.Args(norm_obs=False))
    with torch.no_grad():
        agent.actor[-1].bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    env_class.actions_seen = set()
    module.evaluate(agent, "toy/OffsetDiscrete-v0", 1, 0)
    assert env_class.actions_seen == {-1}


@pytest.mark.parametrize(
    "script", [s for s in SCRIPTS if "max_grad_norm" in import_script(s).Args.__dataclass_fields__]
)
def test_gradient_clipping_holds_the_policy_still(script, tmp_path, monkeypatch):
    """--max-grad-norm 1e-9: Adam (eps 1e-5) then moves the actor's weights by about 1e-4 of what an
    unclipped-size run moves them. Catches: no clipping, or clipping applied to something other than
    the policy's parameters."""
    module = import_script(script)
    made = []

    class RecordingAgent(module.Agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.initial = [p.detach().clone() for p in self.actor.parameters()]
            made.append(self)

    monkeypatch.setattr(module, "Agent", RecordingAgent)
    monkeypatch.chdir(tmp_path)
    moved = {}
    for norm in ("0.5", "1e-9"):
        assert (
            cli(
                script,
                *tiny(script),
                "--max-grad-norm",
                norm,
                "--eval-episodes",
                "0",
                "--exp-name",
                "c",
            )
            is None
        )
        agent = made[-1]
        moved[norm] = max(
            (p.detach() - p0).abs().max().item()
            for p, p0 in zip(agent.actor.parameters(), agent.initial)
        )
    assert moved["0.5"] > 1e-4 and moved["1e-9"] < 1e-2 * moved["0.5"], moved


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_same_seed_same_metrics(script, env_id, tmp_path, monkeypatch):
    module = import_script(script)
    monkeypatch.chdir(tmp_path)
    runs = []
    for name in ("first", "second"):  # the script's tiny flags, a budget of 192 steps
        args = tyro.cli(
            module.Args,
            args=[
                *tiny(script),
                "--env-id",
                env_id,
                "--total-timesteps",
                "192",
                "--eval-episodes",
                "1",
                "--exp-name",
                name,
                "--seed",
                "3",
            ],
        )
        module.train(args)
        (run_dir,) = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
        runs.append([
            {k: v for k, v in m.items() if k != "charts/SPS"} for m in read_metrics(run_dir)
        ])
    assert runs[0] == runs[1]


def draws_match_the_policy(policy, draws: torch.Tensor) -> None:
    """Draws from a categorical (frequencies) or a diagonal Gaussian (mean and std) against
    `policy`, the torch distribution of one observation repeated."""
    n = len(draws)
    if isinstance(policy, torch.distributions.Categorical):
        assert (
            policy.probs.max() - policy.probs.min() > 0.04
        )  # 10 x atol from uniform: it has teeth
        frequencies = torch.bincount(draws, minlength=policy.probs.shape[-1]) / n
        torch.testing.assert_close(frequencies, policy.probs[0], atol=4e-3, rtol=0)
    else:
        mean, std = policy.mean[0], policy.stddev[0]
        assert (draws.mean(0) - mean).abs().max() < 4 * std.max() / n**0.5 + 1e-6, (
            draws.mean(0),
            mean,
        )
        torch.testing.assert_close(draws.std(0), std, atol=0, rtol=1e-2)


def probe_and_draws(module, agent, obs: torch.Tensor) -> tuple:
    """The rollout's sampler, built on a probe of 8 different observations (as the rollout builds it
    on its envs' observations), the policy of obs[0] as the losses see it, and the sampler's draws
    for obs (every row of which is obs[0])."""
    probe = (
        torch.randn(8, obs.shape[1], generator=torch.Generator().manual_seed(5)) * 3 + 5
    ).numpy()
    with torch.inference_mode():
        sample = module.make_sampler(agent, np.random.default_rng(0), probe)
        policy = agent.dist(agent.policy_params(obs[:1]))
        return sample, policy, torch.from_numpy(np.asarray(sample(obs.numpy())))


@pytest.mark.parametrize("script", SCRIPTS)
def test_rollout_sampler_draws_from_the_policy(script):
    """make_sampler, the rollout's numpy twin of the policy, against torch.distributions built from
    policy_params(s), the path the losses use: Gumbel-max frequencies match softmax(logits);
    Gaussian draws have the mean and std. The observation statistics sit far from (0, 1), one
    coordinate lies beyond the +-10 clip, the output layer is scaled up and the stds are not 1, so
    that a sampler that skips the normalisation or its clip (or actor_critic's shared trunk) or the
    std draws from another policy."""
    import gymnasium as gym

    module = import_script(script)
    torch.manual_seed(0)
    for space in (gym.spaces.Discrete(4), gym.spaces.Box(-1, 1, (2,))):
        shapes = [{}, {"shared_network": True}] if script == "actor_critic.py" else [{}]
        for kwargs in shapes:
            agent = module.Agent(3, space, module.Args(norm_obs=True, **kwargs))
            with torch.no_grad():
                agent.obs_norm.update(torch.randn(1000, 3) * 3 + 5)
                agent.actor[-1].weight.mul_(300)
                if agent.continuous:
                    agent.actor_logstd.copy_(torch.tensor([0.5, 2.0]).log())
            obs = (torch.randn(1, 3) * 3 + 5).repeat(200_000, 1)
            obs[:, 0] = 5 + 3 * 30  # about 30 standard deviations out: normalised and clipped to 10
            sample, policy, draws = probe_and_draws(module, agent, obs)
            assert sample.__name__ in (
                "categorical",
                "normal",
            )  # the numpy twin, not the torch fallback
            draws_match_the_policy(policy, draws)


@pytest.mark.parametrize(
    "change", ["relu", "deeper", "layernorm", "dropout", "squashed mean", "state std"]
)
@pytest.mark.parametrize("script", ["reinforce.py", "actor_critic.py", "ppo_clip.py"])
def test_a_changed_policy_still_samples_from_itself(script, change):
    """A copier changes the actor (ReLU, another layer, a LayerNorm, dropout) or the policy's
    outputs: the rollout's sampler must still draw from the policy the losses see. ReLU and another
    Linear/Tanh layer have numpy twins; a LayerNorm, a Dropout, a mean squashed in policy_params or
    a state-dependent std have none (or the twin no longer reproduces agent.dist): the sampler then
    falls back on torch itself. Catches: a twin that skips an unknown layer, or that is used without
    checking it against agent.dist. The plumbing is byte-identical in every script (test_family.py),
    so three of them cover it."""
    import gymnasium as gym
    import torch.nn as nn

    module = import_script(script)
    torch.manual_seed(0)
    for space in (gym.spaces.Discrete(4), gym.spaces.Box(-1, 1, (2,))):
        agent = module.Agent(3, space, module.Args(norm_obs=True))
        n_out = agent.actor[-1].out_features
        layers = {
            "relu": [nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, n_out)],
            "deeper": [
                nn.Linear(3, 32),
                nn.Tanh(),
                nn.Linear(32, 32),
                nn.Tanh(),
                nn.Linear(32, 32),
                nn.Tanh(),
                nn.Linear(32, n_out),
            ],
            "layernorm": [nn.Linear(3, 64), nn.LayerNorm(64), nn.Tanh(), nn.Linear(64, n_out)],
            "dropout": [nn.Linear(3, 64), nn.Tanh(), nn.Dropout(0.5), nn.Linear(64, n_out)],
        }
        if change in layers:
            agent.actor = nn.Sequential(*layers[change])
        elif (
            change == "squashed mean"
        ):  # the outputs go through tanh in policy_params, not in the actor
            plain = agent.policy_params
            agent.policy_params = lambda obs: 2 * torch.tanh(plain(obs))
        else:  # a std that depends on the state: policy_params no longer uses actor_logstd
            if space.shape == ():
                continue
            plain = agent.policy_params
            agent.policy_params = lambda obs: (
                plain(obs) + torch.cat([0 * obs[..., :2], obs[..., :2] / 5], -1)
            )
        with torch.no_grad():
            agent.obs_norm.update(torch.randn(1000, 3) * 3 + 5)
            agent.actor[-1].weight.mul_(30)
        obs = (torch.randn(1, 3) * 3 + 5).repeat(200_000, 1)
        sample, policy, draws = probe_and_draws(module, agent, obs)
        twin = change in ("relu", "deeper")
        assert (sample.__name__ in ("categorical", "normal")) == twin, (change, sample.__name__)
        if (
            change != "dropout"
        ):  # dropout's draws are random in training mode: the fallback is enough
            draws_match_the_policy(policy, draws)


def test_a_script_with_a_changed_actor_trains(tmp_path, monkeypatch):
    """End to end: ppo_clip.py with a LayerNorm in its actor (no numpy twin) trains and
    evaluates."""
    import torch.nn as nn

    import ppo_clip

    class LayerNormAgent(ppo_clip.Agent):
        def __init__(self, obs_dim, action_space, args):
            super().__init__(obs_dim, action_space, args)
            self.actor = nn.Sequential(
                nn.Linear(obs_dim, 64),
                nn.LayerNorm(64),
                nn.Tanh(),
                nn.Linear(64, self.actor[-1].out_features),
            )

    monkeypatch.setattr(ppo_clip, "Agent", LayerNormAgent)
    monkeypatch.chdir(tmp_path)
    assert cli("ppo_clip.py", *tiny("ppo_clip.py"), "--env-id", "Pendulum-v1") is None
    assert "eval/episodic_return" in read_metrics(only_run_dir(tmp_path))[-1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_rollout_samples_from_the_current_policy(script, tmp_path, monkeypatch):
    """The rollout's sampler is a numpy copy of the policy: it must be rebuilt for every rollout,
    after the previous update moved the weights and the observation statistics. Catches: one sampler
    built before the loop (on the CPU its weight matrices are views that follow the update, but not
    its std or statistics)."""
    module = import_script(script)
    builds, real = [], module.make_sampler

    def recording(agent, rng, probe):
        builds.append(
            [p.detach().clone() for p in agent.parameters()] + [agent.obs_norm.count.clone()]
        )
        return real(agent, rng, probe)

    monkeypatch.setattr(module, "make_sampler", recording)
    monkeypatch.chdir(tmp_path)
    assert cli(script, *tiny(script), "--norm-obs", "--eval-episodes", "0") is None
    iterations = [m for m in read_metrics(only_run_dir(tmp_path)) if "charts/SPS" in m]
    assert len(iterations) >= 2 and len(builds) == len(iterations)
    for before, after in zip(builds, builds[1:]):
        assert after[-1] > before[-1]  # the statistics moved in between
        assert any(
            not torch.equal(a, b) for a, b in zip(after[:-1], before[:-1])
        )  # and so did the weights


# The data flow of every script's own train(), checked for each script (the plumbing it calls is
# shared and byte-identical, tests/test_family.py; the lines below are each script's own).

VECTOR_SCRIPTS = [
    s for s in SCRIPTS if s not in ("reinforce.py", "vpg_baseline.py")
]  # segments + GAE


def in_process(script: str, tmp_path, *flags: str, iterations: int = 0):
    """The script's Args from its tiny CartPole flags and `flags` (the last of a repeated flag
    wins); with iterations, a Pendulum run of that many (whole-episode batches: 2 envs x 200 steps
    each)."""
    if iterations:
        args = tyro.cli(import_script(script).Args, args=tiny(script))
        batch = args.num_envs * (
            200 if script in ("reinforce.py", "vpg_baseline.py") else args.num_steps
        )
        flags = ("--env-id", "Pendulum-v1", "--total-timesteps", str(batch * iterations), *flags)
    return tyro.cli(
        import_script(script).Args, args=[*tiny(script), "--eval-episodes", "0", *flags]
    )


@pytest.mark.parametrize("script", VECTOR_SCRIPTS)
def test_gae_sees_terminated_dones_and_the_true_next_observation(script, tmp_path, monkeypatch):
    """End to end on envs whose observation is the step count (episodes of 5 steps ended by a time
    limit, of 3 by termination, of 5 by both at once): every call of compute_gae gets done = the
    episode ended either way (0/1), terminated = it ended by itself, and V(s') = V(final
    observation) at an episode's end, V(next stored obs) elsewhere; its advantages are those of each
    episode on its own; the log has every episode with its true return. Catches, in each script's
    own train(): terminated and done swapped, done = terminated + truncated, V(reset obs) at a time
    limit, episodes not logged."""
    import toy_envs  # noqa: F401  (registers the toy envs)

    module = import_script(script)
    seen, real_gae = [], module.compute_gae
    monkeypatch.setattr(
        module,
        "compute_gae",
        lambda *a: seen.append([x.detach().clone() for x in a[:5]]) or real_gae(*a),
    )
    monkeypatch.chdir(tmp_path)
    cases = [
        ("toy/Count-v0", "truncation", 5),
        ("toy/CountTerminating-v0", "termination", 3),
        ("toy/CountTerminatingAtLimit-v0", "both", 5),
    ]
    for env_id, ends_by, length in cases:
        seen.clear()
        module.train(
            in_process(
                script,
                tmp_path,
                "--env-id",
                env_id,
                "--num-envs",
                "2",
                "--num-steps",
                "16",
                "--total-timesteps",
                "64",
                "--exp-name",
                ends_by,
            )
        )
        assert len(seen) == 2
        for iteration, (rewards, values, next_values, terminated, dones) in enumerate(seen):
            t = torch.arange(
                16 * iteration, 16 * (iteration + 1)
            )  # the envs run on across rollouts
            expected_dones = ((t + 1) % length == 0).float()[:, None].expand(16, 2)
            assert torch.equal(dones.float(), expected_dones)
            expected_terminated = (
                torch.zeros_like(expected_dones) if ends_by == "truncation" else expected_dones
            )
            assert torch.equal(terminated.float(), expected_terminated)
            inside = dones[:-1] == 0
            assert torch.equal(next_values[:-1][inside], values[1:][inside])
            final = next_values[dones.bool()]
            assert torch.all(final == final[0])  # every episode ends on the same observation...
            assert torch.all(
                final != values[1:][dones[:-1].bool()]
            )  # ...which is not the reset one
            advantages = real_gae(rewards, values, next_values, terminated, dones, 0.99, 0.95)
            for n in range(2):
                starts = [0] + [u + 1 for u in range(15) if dones[u, n]]
                for start in starts:
                    end = next((u for u in range(start, 16) if dones[u, n]), 15) + 1
                    alone = real_gae(
                        rewards[start:end, n],
                        values[start:end, n],
                        next_values[start:end, n],
                        terminated[start:end, n],
                        dones[start:end, n],
                        0.99,
                        0.95,
                    )
                    torch.testing.assert_close(advantages[start:end, n], alone)
    (truncation_run,) = glob.glob(str(tmp_path / "runs" / "*truncation*"))
    episodes = [m for m in read_metrics(truncation_run) if "charts/episodic_return" in m]
    assert len(episodes) == 2 * (64 // 2 // 5)
    assert all(
        m["charts/episodic_length"] == 5 and m["charts/episodic_return"] == 5.0 for m in episodes
    )


@pytest.mark.parametrize("script", VECTOR_SCRIPTS)
def test_the_critic_is_fitted_on_the_lambda_return(script, tmp_path, monkeypatch):
    """Every value_loss call's targets, over the first epoch of an iteration, are exactly the batch
    of R = A + V_old(s) from that iteration's compute_gae (the lambda-return; lambda = 0 in
    actor_critic: the TD target). Catches: the critic fitted on A, on the rewards, on a stale batch,
    or on R computed with V after the update."""
    module = import_script(script)
    events, real_gae, real_loss = [], module.compute_gae, module.value_loss

    def gae(rewards, values, *rest):
        advantages = real_gae(rewards, values, *rest)
        events.append(("R", (advantages + values).detach().flatten()))
        return advantages

    def loss(values, returns, *rest):
        events.append(("target", returns.detach().clone()))
        return real_loss(values, returns, *rest)

    monkeypatch.setattr(module, "compute_gae", gae)
    monkeypatch.setattr(module, "value_loss", loss)
    monkeypatch.chdir(tmp_path)
    module.train(in_process(script, tmp_path, iterations=3))
    starts = [i for i, (kind, _) in enumerate(events) if kind == "R"]
    assert len(starts) >= 2
    for start, end in zip(starts, starts[1:] + [len(events)]):
        expected = events[start][1]
        targets, seen = [], 0
        for kind, value in events[start + 1 : end]:
            if seen == len(expected):  # the first epoch is over
                break
            targets.append(value)
            seen += len(value)
        assert seen == len(expected)
        torch.testing.assert_close(
            torch.cat(targets).sort().values, expected.sort().values, rtol=0, atol=0
        )


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_policy_step_moves_the_whole_policy(script, tmp_path, monkeypatch):
    """One iteration on Pendulum: every parameter of the actor, the Gaussian's log-std included, has
    moved. Catches: a policy step (or an optimizer) that leaves out the log-std, e.g. npg's and
    trpo's parameter list built from agent.actor alone."""
    module = import_script(script)
    made = []

    class RecordingAgent(module.Agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append((self, {k: v.clone() for k, v in self.state_dict().items()}))

    monkeypatch.setattr(module, "Agent", RecordingAgent)
    monkeypatch.chdir(tmp_path)
    module.train(in_process(script, tmp_path, iterations=1))
    ((agent, initial),) = made
    actor = [k for k in initial if k.startswith("actor") and k != "actor_logstd"]
    assert "actor_logstd" in initial and actor
    assert not torch.equal(agent.state_dict()["actor_logstd"], initial["actor_logstd"])
    assert all(not torch.equal(agent.state_dict()[k], initial[k]) for k in actor)


@pytest.mark.parametrize("script", SCRIPTS)
def test_observation_statistics_move_once_per_iteration_after_the_update(
    script, tmp_path, monkeypatch
):
    """Normalisation on (Pendulum): within an iteration the rollout's sampler, pi_old's batched pass
    and every pass of the update see the same statistics; between iterations they have absorbed
    exactly the iteration's observations. Catches: the statistics moved before pi_old or the update
    (the ratio is then not 1 at theta_old, the rollout's policy not pi_old), twice, or never."""
    module = import_script(script)
    events, real_sampler = [], module.make_sampler

    class RecordingAgent(module.Agent):
        def policy_params(self, obs):
            events.append(("pass", float(self.obs_norm.count)))
            return super().policy_params(obs)

    def sampler(agent, rng, probe):
        events.append(("rollout", float(agent.obs_norm.count)))
        return real_sampler(agent, rng, probe)

    monkeypatch.setattr(module, "Agent", RecordingAgent)
    monkeypatch.setattr(module, "make_sampler", sampler)
    monkeypatch.chdir(tmp_path)
    module.train(in_process(script, tmp_path, iterations=3))
    steps = [m["global_step"] for m in read_metrics(only_run_dir(tmp_path)) if "charts/SPS" in m]
    starts = [i for i, (kind, _) in enumerate(events) if kind == "rollout"]
    assert len(starts) == len(steps) >= 2
    counts = []
    for start, end in zip(starts, starts[1:] + [len(events)]):
        iteration = {count for _, count in events[start:end]}
        assert len(iteration) == 1, events[start:end]
        counts.append(iteration.pop())
    for (before, after), (step, next_step) in zip(zip(counts, counts[1:]), zip([0] + steps, steps)):
        assert after - before == pytest.approx(next_step - step, abs=1e-2)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_reward_scaling_return_is_carried_across_rollouts(script, tmp_path, monkeypatch):
    """Reward scaling on (Pendulum): the discounted return R that the scaling tracks runs on from
    one rollout to the next where the envs run on (fixed-length segments: the carry out of one
    rollout is the carry into the next), and starts at 0 in every batch of whole episodes
    (reinforce, vpg_baseline). Catches: the carry dropped (reset every rollout) or never updated."""
    module = import_script(script)
    calls, real = [], module.scale_rewards

    def recording(rewards, dones, gamma, running_return, *rest):
        scaled, carry = real(rewards, dones, gamma, running_return, *rest)
        calls.append((running_return.clone(), carry.clone()))
        return scaled, carry

    monkeypatch.setattr(module, "scale_rewards", recording)
    monkeypatch.chdir(tmp_path)
    module.train(in_process(script, tmp_path, iterations=3))
    assert len(calls) >= 2
    if script in VECTOR_SCRIPTS:
        assert torch.equal(calls[0][0], torch.zeros_like(calls[0][0]))
        assert all(
            torch.equal(given, carried) for (_, carried), (given, _) in zip(calls, calls[1:])
        )
        assert any(carried.abs().sum() > 0 for _, carried in calls)  # Pendulum's episodes run on
    else:
        assert all(torch.equal(given, torch.zeros_like(given)) for given, _ in calls)


def data_flow_mutants() -> list[tuple]:
    """One-line mistakes in each script's own train() that the data-flow tests above must catch
    (`python tests/mutants.py --only "data flow" -- tests/test_scripts.py -k "gae_sees or
    lambda_return or whole_policy or statistics_move or carried"`)."""
    mutants = []
    for script in VECTOR_SCRIPTS:
        name = script[:-3]
        mutants += [
            (
                f"{name}: data flow: terminated and done swapped into GAE",
                script,
                "compute_gae(rewards, values, next_values, terminated, dones,",
                "compute_gae(rewards, values, next_values, dones, terminated,",
            ),
            (
                f"{name}: data flow: V(reset obs) at a time limit",
                script,
                'next_obs_buf[step, ended] = np.stack(infos["final_obs"][ended])',
                "pass",
            ),
            (
                f"{name}: data flow: the critic fitted on the advantages",
                script,
                "            returns = advantages + values\n",
                "            returns = advantages\n",
            ),
            (
                f"{name}: data flow: the reward-scaling carry dropped",
                script,
                "rewards, running_return = scale_rewards(",
                "rewards, _ = scale_rewards(",
            ),
        ]
    for script in SCRIPTS:
        name = script[:-3]
        mutants.append((
            f"{name}: data flow: the observation statistics never move",
            script,
            "        update_obs_norm(agent, b_obs, args.env_id, global_step)\n",
            "",
        ))
    for script in ("npg.py", "trpo.py"):
        mutants.append((
            f"{script[:-3]}: data flow: the log-std left out of the policy step",
            script,
            "actor_params = [p for name, p in agent.named_parameters() if not name.startswith"
            '("critic.")]',
            "actor_params = list(agent.actor.parameters())",
        ))
    for script in ("ppo_kl.py", "ppo_clip.py", "actor_critic.py", "npg.py", "trpo.py"):
        mutants.append(
            (
                f"{script[:-3]}: data flow: the observation statistics moved before pi_old",
                script,
                "        with torch.no_grad():\n            old_params = agent.policy_params",
                "        update_obs_norm(agent, obs.flatten(0, 1), args.env_id, global_step)\n"
                "        with torch.no_grad():\n            old_params = agent.policy_params",
            )
            if script != "actor_critic.py"
            else (
                f"{script[:-3]}: data flow: the observation statistics moved before pi_old",
                script,
                "        old_params = agent.policy_params(b_obs)\n",
                "        update_obs_norm(agent, b_obs, args.env_id, global_step)\n"
                "        old_params = agent.policy_params(b_obs)\n",
            )
        )
    mutants.append((
        "vpg_baseline: data flow: the log-std left out of the policy step",
        "vpg_baseline.py",
        "parameters = [p for name, p in agent.named_parameters() if not name.startswith"
        '("critic.")]',
        "parameters = list(agent.actor.parameters())",
    ))
    return mutants


MUTANTS = data_flow_mutants()
