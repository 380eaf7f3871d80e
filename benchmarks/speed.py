"""Environment steps per second: each of our scripts on its presets, side by side with peer implementations on
identical settings and with the bare vector env (the ceiling), in one run.

    python benchmarks/speed.py                                   # every CartPole-v1 matchup, 3 repeats
    python benchmarks/speed.py --env-id HalfCheetah-v5           # every HalfCheetah-v5 matchup
    python benchmarks/speed.py --matchups ppo_clip-cartpole trpo-cartpole --repeats 5
    python benchmarks/speed.py --list                            # the matchups and their settings; runs nothing
    python benchmarks/speed.py -- --torch-threads 2              # flags after -- go to all our scripts

A matchup (MATCHUPS below) is one of our scripts with its flags on one env id, the peers configured
identically (Stable-Baselines3 PPO / A2C and sb3-contrib TRPO through benchmarks/peers.py, CleanRL's ppo.py),
and the raw env with the same number of envs. Every variant of every chosen matchup runs once per repeat, one
process at a time, interleaved repeat by repeat so that a drift in the machine's speed hits all alike; the
tables give medians over repeats and ratios of medians (ours / theirs). Each matchup's budget is rounded up to
whole rollouts, so both sides take the same number of steps.

SPS of a run: ours, the last charts/SPS row of metrics.jsonl (steps / training seconds, start-up excluded);
CleanRL, its last "SPS:" line (the same); SB3 and sb3-contrib print none: env steps / seconds of learn(), the
model being built before the clock starts (peers.py); raw env, a Gymnasium SyncVectorEnv (SAME_STEP
autoreset) stepping pre-sampled random actions in this process. Runs happen in temporary directories.

The peers are no part of the project: they run with --peers-python, a separate benchmark venv, and CleanRL's
ppo.py is fetched by hand (--cleanrl-ppo); see benchmarks/README.md. Whatever is missing is skipped with a
message and listed in the results: benchmarks/results/speed_<env>.json and .md (--name for another name).
The files hold no paths of this machine: the command is recorded from the repo root, without path options.
"""

import argparse
import contextlib
import glob
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import gymnasium as gym

from common import RESULTS, ROOT, code_version, machine_info, now, read_jsonl, split_argv

PEERS_PY = os.path.join(ROOT, "benchmarks", "peers.py")
# CleanRL's ppo.py as measured so far (vwxyzjn/cleanrl): its git blob, and the commit it was taken from.
CLEANRL_COMMIT, CLEANRL_BLOB = "fe8d8a03c41a7ef5b523e2e354bd01c363e786bb", "edde76baef51f05a8654160dfb19a4fdb34d14d3"
DEFAULT_STEPS = {"CartPole-v1": 100_000, "HalfCheetah-v5": 20_480}  # per run, unless --total-timesteps
# A child's thread count is set per variant, not inherited from this shell.
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
OUR_COMMON_FLAGS = ["--seed", "1", "--exp-name", "speed", "--eval-episodes", "0"]  # the final eval is not timed


@dataclass
class Peer:
    label: str  # its row in the tables
    algo: str  # "ppo" | "a2c" | "trpo" (peers.py --algo), or "cleanrl" (CleanRL's ppo.py; settings become its flags)
    settings: dict = field(default_factory=dict)
    threads: int = 1  # torch threads: 1 (also OMP_NUM_THREADS=1), or 0 for torch's default


@dataclass
class Matchup:
    name: str
    env_id: str
    script: str  # ours, relative to the repo root
    # Ours, besides --env-id, --total-timesteps and OUR_COMMON_FLAGS. With preset=True, run.py's PRESETS for the
    # script and env win over these (None: no fallback, the matchup is skipped while run.py has no preset).
    flags: list[str] | None
    settings: str = ""  # the shared settings, in words (default: the flags)
    peers: list[Peer] = field(default_factory=list)
    note: str = ""
    preset: bool = False


# Identical settings, spelled out on both sides (rather than relying on defaults that may drift).
NETS = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": "Tanh", "ortho_init": True}  # = our Agent
NORMALIZE = {"norm_obs": True, "norm_reward": True, "gamma": 0.99}  # = our obs normalisation + reward scaling
SB3_PPO = {"gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2, "clip_range_vf": 0.2,  # ours clips the value loss too
           "vf_coef": 0.5, "max_grad_norm": 0.5, "normalize_advantage": True, "linear_lr": True, "policy_kwargs": NETS}
CLEANRL_PPO = {"num_envs": 4, "num_steps": 128, "num_minibatches": 4, "update_epochs": 4, "learning_rate": 2.5e-4,
               "ent_coef": 0.01, "gae_lambda": 0.95, "clip_coef": 0.2}
SB3_TRPO = {"cg_damping": 0.1, "target_kl": 0.01, "line_search_max_iter": 10, "line_search_shrinking_factor": 0.8,
            "gamma": 0.99, "gae_lambda": 0.95, "normalize_advantage": True, "sub_sampling_factor": 1,
            "policy_kwargs": NETS}
TRPO = ["--max-kl", "0.01", "--cg-damping", "0.1", "--backtrack-iters", "10", "--backtrack-coef", "0.8",
        "--learning-rate", "1e-3"]  # = SB3_TRPO; --learning-rate: the critic's
PPO_MUJOCO = ["--num-envs", "1", "--num-steps", "2048", "--num-minibatches", "32", "--update-epochs", "10",
              "--learning-rate", "3e-4", "--ent-coef", "0.0"]

MATCHUPS = [
    # Against peers: both sides configured alike, flag by flag.
    Matchup("ppo_clip-cartpole", "CartPole-v1", "ppo_clip.py",
            ["--num-envs", "4", "--num-steps", "128", "--num-minibatches", "4", "--update-epochs", "4",
             "--learning-rate", "2.5e-4", "--ent-coef", "0.01", "--gae-lambda", "0.95", "--clip-coef", "0.2"],
            "defaults (CleanRL's): 4 envs x 128 steps, 4 minibatches x 4 epochs, lr 2.5e-4 (linear decay), ent 0.01, "
            "GAE 0.95, clip 0.2", [
                Peer("CleanRL ppo.py, 1 thread", "cleanrl", CLEANRL_PPO),
                Peer("CleanRL ppo.py, default threads", "cleanrl", CLEANRL_PPO, threads=0),
                Peer("SB3 PPO, 1 thread", "ppo", {"n_envs": 4, "n_steps": 128, "batch_size": 128, "n_epochs": 4,
                                                  "learning_rate": 2.5e-4, "ent_coef": 0.01, **SB3_PPO}),
            ]),
    Matchup("ppo_clip-halfcheetah", "HalfCheetah-v5", "ppo_clip.py", PPO_MUJOCO,
            "MuJoCo preset: 1 env x 2048 steps, 32 minibatches (64) x 10 epochs, lr 3e-4 (linear decay), ent 0, "
            "obs normalisation + reward scaling", [
                Peer("SB3 PPO, 1 thread", "ppo", {"n_envs": 1, "normalize": NORMALIZE, "n_steps": 2048,
                                                  "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4,
                                                  "ent_coef": 0.0, **SB3_PPO}),
            ], note="no CleanRL: its ppo.py is discrete-only, its ppo_continuous_action.py does not start under "
                    "Gymnasium 1.x."),
    Matchup("actor_critic-cartpole", "CartPole-v1", "actor_critic.py",
            ["--num-envs", "8", "--num-steps", "5", "--learning-rate", "7e-4", "--gae-lambda", "0.0",
             "--ent-coef", "0.0", "--vf-coef", "0.5", "--max-grad-norm", "0.5"],
            "defaults: 8 envs x 5 steps, one gradient step per segment, lr 7e-4 (linear decay), TD(0) advantages, "
            "ent 0", [
                Peer("SB3 A2C, 1 thread", "a2c", {"n_envs": 8, "n_steps": 5, "learning_rate": 7e-4, "linear_lr": True,
                                                  "gamma": 0.99, "gae_lambda": 0.0, "ent_coef": 0.0, "vf_coef": 0.5,
                                                  "max_grad_norm": 0.5, "normalize_advantage": False,
                                                  "policy_kwargs": NETS}),
            ], note="optimizer: ours Adam, SB3 A2C its default RMSprop (one step per segment either way)."),
    Matchup("actor_critic-halfcheetah", "HalfCheetah-v5", "actor_critic.py",
            ["--num-envs", "1", "--num-steps", "5", "--learning-rate", "7e-4", "--gae-lambda", "1.0",
             "--ent-coef", "0.0", "--vf-coef", "0.5", "--max-grad-norm", "0.5", "--rmsprop",
             "--no-anneal-lr"],
            "MuJoCo preset: rl-baselines3-zoo's A2C shape, 1 env x 5 steps, one gradient step per segment, "
            "RMSprop, lr 7e-4 (constant), lambda 1, ent 0, obs normalisation + reward scaling", [
                Peer("SB3 A2C, 1 thread", "a2c", {"n_envs": 1, "normalize": NORMALIZE, "n_steps": 5,
                                                  "learning_rate": 7e-4, "gamma": 0.99,
                                                  "gae_lambda": 1.0, "ent_coef": 0.0, "vf_coef": 0.5,
                                                  "max_grad_norm": 0.5, "normalize_advantage": False,
                                                  "policy_kwargs": NETS}),
            ]),
    Matchup("trpo-cartpole", "CartPole-v1", "trpo.py",
            ["--num-envs", "2", "--num-steps", "512", "--num-minibatches", "8", "--update-epochs", "10",
             "--cg-iters", "10", *TRPO],
            "defaults: 2 envs x 512 steps, max KL 0.01, 10 CG iterations, line search 10 x 0.8; critic: 10 epochs "
            "of minibatch 128, lr 1e-3", [
                Peer("sb3-contrib TRPO, 1 thread", "trpo", {"n_envs": 2, "n_steps": 512, "batch_size": 128,
                                                           "n_critic_updates": 10, "cg_max_steps": 10,
                                                           "learning_rate": 1e-3, **SB3_TRPO}),
            ]),
    Matchup("trpo-halfcheetah", "HalfCheetah-v5", "trpo.py",
            ["--num-envs", "2", "--num-steps", "1024", "--num-minibatches", "16", "--update-epochs", "20",
             "--cg-iters", "25", *TRPO],
            "rl-baselines3-zoo preset: 2 envs x 1024 steps, max KL 0.01, 25 CG iterations, line search 10 x 0.8; "
            "critic: 20 epochs of minibatch 128, lr 1e-3; obs normalisation + reward scaling", [
                Peer("sb3-contrib TRPO, 1 thread", "trpo", {"n_envs": 2, "normalize": NORMALIZE, "n_steps": 1024,
                                                           "batch_size": 128, "n_critic_updates": 20,
                                                           "cg_max_steps": 25, "learning_rate": 1e-3, **SB3_TRPO}),
            ]),
    # No peer: the script on its preset in benchmarks/run.py (PRESETS), or these flags while it has none there.
    *[Matchup(f"{script[:-3]}-cartpole", "CartPole-v1", script, [], preset=True)
      for script in ("reinforce.py", "vpg_baseline.py", "npg.py", "ppo_kl.py")],
    *[Matchup(f"{script[:-3]}-halfcheetah", "HalfCheetah-v5", script, flags, preset=True)
      for script, flags in (("reinforce.py", None), ("vpg_baseline.py", None),
                            ("npg.py", ["--num-envs", "2", "--num-steps", "1024", "--num-minibatches", "16",
                                        "--update-epochs", "20", "--cg-iters", "25"]),
                            ("ppo_kl.py", PPO_MUJOCO))],
]


def run_py_presets() -> dict:
    """run.py's PRESETS (script -> env id -> flags), or {} if run.py cannot be imported."""
    try:
        import run as run_py
        return run_py.PRESETS
    except Exception as e:  # run.py is another tool: its failure only costs the presets
        print(f"note: benchmarks/run.py not importable ({e!r}): solo matchups use the flags in MATCHUPS")
        return {}


def our_flags(m: Matchup, presets: dict) -> tuple[list[str] | None, str]:
    """The flags ours runs with, and where they come from."""
    if m.preset and m.env_id in presets.get(m.script, {}):
        return shlex.split(presets[m.script][m.env_id]), "run.py preset"
    return m.flags, ("speed.py's flags (no preset in run.py)" if m.preset else "")


def describe(m: Matchup, flags: list[str] | None, origin: str) -> str:
    if m.settings:
        return m.settings
    return "no preset in run.py: skipped" if flags is None else f"{origin}: {shlex.join(flags) or 'defaults'}"


@dataclass
class Variant:
    label: str
    kind: str  # "ours", "cleanrl", "sb3", "raw env"
    command: str  # as recorded: from the repo root, no paths of this machine
    measure: object  # function(cwd) -> SPS
    sps: list = field(default_factory=list)
    error: str = ""


class RunFailed(Exception):
    pass


def run(cmd: list[str], cwd: str, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        print((proc.stderr or proc.stdout)[-3000:], file=sys.stderr)
        last = ([line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()] or [""])[-1]
        # the results keep no paths of this machine: /any/where/file.py -> file.py
        raise RunFailed(f"exit {proc.returncode}: " + re.sub(r"(?<![\w.])/(?:[^\s/:'\"]+/)*", "", last.strip()))
    return proc.stdout


def printed_sps(cmd: list[str], env: dict, cwd: str) -> int:
    """A peer's SPS: the last "SPS: N" line it prints (CleanRL's ppo.py, peers.py)."""
    found = re.findall(r"^SPS: (\d+)$", run(cmd, cwd, env), re.MULTILINE)
    if not found:
        raise RunFailed("no 'SPS: N' line in its output")
    return int(found[-1])


def ours_sps(cmd: list[str], cwd: str) -> int:
    run(cmd, cwd, BASE_ENV)
    [path] = glob.glob(os.path.join(cwd, "runs", "*", "metrics.jsonl"))
    return [row["charts/SPS"] for row in read_jsonl(path) if "charts/SPS" in row][-1]


def raw_env_sps(env_id: str, num_envs: int, total_timesteps: int, cwd: str) -> int:
    """The env alone, in this process: a ceiling for any training script."""
    with contextlib.chdir(cwd):  # MuJoCo writes MUJOCO_LOG.TXT into the current directory
        envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * num_envs,
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        envs.action_space.seed(0)
        actions = [envs.action_space.sample() for _ in range(1000)]
        envs.reset(seed=0)
        iterations = total_timesteps // num_envs
        start = time.perf_counter()
        for i in range(iterations):
            envs.step(actions[i % len(actions)])
        elapsed = time.perf_counter() - start
        envs.close()
    return int(iterations * num_envs / elapsed)


def script_help(script: str, cache: dict = {}) -> str:  # noqa: B006 (a cache per process is the point)
    """The script's --help, box-drawing stripped and whitespace collapsed: its flags and their defaults."""
    if script not in cache:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], cwd=ROOT, env=BASE_ENV,
                              capture_output=True, text=True)
        cache[script] = " ".join(re.sub(r"[│╭╮╰╯─]", " ", proc.stdout).split())
    return cache[script]


def help_default(script: str, flag: str) -> int | None:
    match = re.search(re.escape(flag) + r" INT\b.*?\(default: (\d+)\)", script_help(script))
    return int(match.group(1)) if match else None


def missing_flags(script: str, flags: list[str]) -> list[str]:
    known = set(re.findall(r"--[a-z][a-z0-9-]*", script_help(script)))
    return [flag for flag in flags if flag.startswith("--") and flag.split("=")[0] not in known]


def peers_info(python: str, cleanrl_ppo: str) -> dict:
    """Package versions in the peers' venv (None: not installed) and CleanRL's ppo.py (its git blob id)."""
    info = {}
    if os.path.isfile(python):
        proc = subprocess.run([python, PEERS_PY, "--versions"], env=BASE_ENV, capture_output=True, text=True)
        info = json.loads(proc.stdout) if proc.returncode == 0 else {}
    if os.path.isfile(cleanrl_ppo):
        blob = subprocess.run(["git", "hash-object", cleanrl_ppo], capture_output=True, text=True).stdout.strip()
        info["cleanrl_ppo_py"] = {"git_blob": blob, "commit": CLEANRL_COMMIT if blob == CLEANRL_BLOB else "unknown"}
    return info


def peer_unavailable(peer: Peer, info: dict) -> str:
    """Why a peer cannot run here ("" if it can)."""
    if not info.get("python"):
        return "no working peers' Python at --peers-python (see benchmarks/README.md)"
    if peer.algo == "cleanrl":
        if "cleanrl_ppo_py" not in info:
            return "CleanRL's ppo.py not found at --cleanrl-ppo (see benchmarks/README.md)"
        return "" if info.get("torch") and info.get("gymnasium") else "torch or gymnasium missing in the peers' venv"
    package = "sb3-contrib" if peer.algo == "trpo" else "stable-baselines3"
    return "" if info.get(package) else f"{package} is not installed in the peers' venv"


def flag_list(settings: dict) -> list[str]:
    """{"num_envs": 4} -> ["--num-envs", "4"] (CleanRL's flags)."""
    return [item for key, value in settings.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def variants(m: Matchup, flags: list[str], steps: int, extra: list[str], info: dict, args,
             skipped: list[str]) -> list[Variant]:
    """Ours, the peers that can run here, and the raw env, in the order they run within a repeat."""
    ours = ["--env-id", m.env_id, "--total-timesteps", str(steps), *OUR_COMMON_FLAGS, *flags, *extra]
    found = [Variant(f"ours: {m.script}", "ours", shlex.join(["python", m.script, *ours]),
                     lambda cwd, cmd=[sys.executable, os.path.join(ROOT, m.script), *ours]: ours_sps(cmd, cwd))]
    for peer in m.peers:
        if why := peer_unavailable(peer, info):
            skipped.append(f"{m.name}: {peer.label}: {why}")
            print(f"skipping {m.name}: {peer.label}: {why}")
            continue
        env = {**BASE_ENV, **({"OMP_NUM_THREADS": "1"} if peer.threads == 1 else {})}
        theirs = ["--env-id", m.env_id, "--seed", "1", "--total-timesteps", str(steps)]
        if peer.algo == "cleanrl":
            theirs += ["--no-cuda", *flag_list(peer.settings)]
            cmd, shown = [args.peers_python, args.cleanrl_ppo, *theirs], ["PEERS_PYTHON", "ppo.py", *theirs]
        else:
            theirs = ["--algo", peer.algo, *theirs, "--threads", str(peer.threads),
                      "--settings", json.dumps(peer.settings)]
            cmd, shown = [args.peers_python, PEERS_PY, *theirs], ["PEERS_PYTHON", "benchmarks/peers.py", *theirs]
        prefix = "OMP_NUM_THREADS=1 " if peer.threads == 1 else ""
        found.append(Variant(peer.label, "cleanrl" if peer.algo == "cleanrl" else "sb3", prefix + shlex.join(shown),
                             # SB3 would log into a new /tmp/SB3-<date> directory per run: keep it in the run's own
                             lambda cwd, cmd=cmd, env=env: printed_sps(cmd, {**env, "SB3_LOGDIR": cwd}, cwd)))
    num_envs = size(m.script, [*flags, *extra], "--num-envs")
    found.append(Variant(f"raw SyncVectorEnv ({num_envs} env{'s' * (num_envs > 1)}), random actions", "raw env",
                         f"SyncVectorEnv of {num_envs} x gym.make({m.env_id!r}), SAME_STEP autoreset, {steps} steps",
                         lambda cwd: raw_env_sps(m.env_id, num_envs, steps, cwd)))
    return found


def size(script: str, flags: list[str], flag: str) -> int:
    """--num-envs or --num-steps of a run: from its flags (the last one wins), else the script's default."""
    given = [int(flags[i + 1]) for i, f in enumerate(flags[:-1]) if f == flag]
    return (given or [help_default(script, flag) or 1])[-1]


def plan(chosen: list[Matchup], args, extra: list[str], info: dict, skipped: list[str]) -> list[tuple]:
    """(matchup, our flags, their origin, the budget, the variants) for each chosen matchup that can run here."""
    presets, todo = run_py_presets(), []
    for m in chosen:
        flags, origin = our_flags(m, presets)
        why = (f"{m.script} not found" if not os.path.isfile(os.path.join(ROOT, m.script)) else
               f"no preset for {m.script} on {m.env_id} in benchmarks/run.py" if flags is None else
               f"{m.script} has no {' '.join(missing)} (update MATCHUPS in benchmarks/speed.py)"
               if (missing := missing_flags(m.script, [*flags, *OUR_COMMON_FLAGS, *extra])) else "")
        if why:
            skipped.append(f"{m.name}: {why}")
            print(f"skipping {m.name}: {why}")
            continue
        batch = size(m.script, [*flags, *extra], "--num-envs") * size(m.script, [*flags, *extra], "--num-steps")
        requested = args.total_timesteps or DEFAULT_STEPS.get(m.env_id, 100_000)
        steps = max(1, -(-requested // batch)) * batch  # whole rollouts, the same for every variant
        todo.append((m, flags, origin, steps, variants(m, flags, steps, extra, info, args, skipped)))
    return todo


def measure(todo: list[tuple], repeats: int) -> None:
    """Every variant once per repeat, one at a time; a variant that fails is reported and not run again."""
    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        for repeat in range(1, repeats + 1):
            for m, *_, found in todo:
                for v in found:
                    if v.error:
                        continue
                    try:
                        v.sps.append(v.measure(tempfile.mkdtemp(dir=tmp)))
                        print(f"repeat {repeat}/{repeats}  {m.name}  {v.label}: {v.sps[-1]} SPS", flush=True)
                    except RunFailed as e:
                        v.error = str(e)
                        print(f"repeat {repeat}/{repeats}  {m.name}  {v.label}: FAILED ({e}), not run again:\n"
                              f"  {v.command}", flush=True)


def recorded_command(argv: list[str]) -> str:
    """This run's command from the repo root, without the options that take a path of this machine."""
    path_options = ("--peers-python", "--cleanrl-ppo", "--out-dir")
    kept, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif "--" in argv[:i]:
            kept.append(arg)
        elif arg in path_options:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in path_options)):
            kept.append(arg)
    return shlex.join(["python", "benchmarks/speed.py", *kept])


def report(todo: list[tuple], args, extra: list[str], info: dict, skipped: list[str], command: str) -> dict:
    matchups = []
    for m, flags, origin, steps, found in todo:
        medians = {v.label: statistics.median(v.sps) for v in found if v.sps}
        ours = medians.get(found[0].label)
        matchups.append({
            "name": m.name, "env_id": m.env_id, "script": m.script, "our_flags": flags, "total_timesteps": steps,
            "settings": describe(m, flags, origin), "note": m.note,
            "variants": [{"label": v.label, "kind": v.kind, "command": v.command, "sps": v.sps,
                          "median_sps": medians.get(v.label), "error": v.error or None,
                          "ours_over_this": round(ours / medians[v.label], 3)
                          if ours and v.kind != "ours" and v.sps else None} for v in found]})
    peers = {k: v for k, v in info.items() if k in ("python", "torch", "gymnasium", "numpy", "mujoco",
                                                    "stable-baselines3", "sb3-contrib", "cleanrl_ppo_py")}
    return {"command": command, "date": now(), "machine": machine_info(),
            "code": code_version(*sorted({m.script for m, *_ in todo}), "gae.py", "benchmarks/speed.py",
                                 "benchmarks/peers.py"),
            "peers": peers, "repeats": args.repeats, "our_extra_flags": extra, "matchups": matchups,
            "skipped": skipped}


def markdown(r: dict) -> str:
    m, p, code = r["machine"], r["peers"], r["code"]
    modified = f" ({', '.join(code['modified'])} modified)" if code["modified"] else ""
    peers = [f"{name} {p[name]}" for name in ("stable-baselines3", "sb3-contrib", "torch", "gymnasium", "numpy",
                                              "mujoco") if p.get(name)]
    if cleanrl := p.get("cleanrl_ppo_py"):
        peers.append(f"CleanRL ppo.py {cleanrl['commit'][:8]} (blob {cleanrl['git_blob'][:8]})")
    envs = ", ".join(dict.fromkeys(mu["env_id"] for mu in r["matchups"]))
    lines = [f"# Speed: {envs}", "", f"`{r['command']}`", "",
             f"{r['date']}, code {code['commit']}{modified}; {m['cpu']}, nproc {m['nproc']}, Python {m['python']}, "
             f"torch {m['torch']}, Gymnasium {m['gymnasium']}, NumPy {m['numpy']}; peers: {', '.join(peers) or 'none'}. "
             f"Median of {r['repeats']} run(s) per variant, one process at a time, interleaved repeat by repeat.", "",
             "| script | env | settings | steps | ours SPS | compared with | their SPS | ours / theirs |",
             "|---|---|---|---:|---:|---|---:|---:|"]
    for mu in r["matchups"]:
        ours, *others = mu["variants"]
        first = f"| {mu['script']} | {mu['env_id']} | {mu['settings']} | {mu['total_timesteps']} | " \
                f"{fmt(ours['median_sps'])} |"
        for i, v in enumerate(others):
            ratio = f"{v['ours_over_this']:.2f}" if v["ours_over_this"] else "-"
            lines.append((first if i == 0 else "| | | | | |") + f" {v['label']} | {fmt(v['median_sps'])} | {ratio} |")
    lines += ["", "| matchup | variant | runs (SPS) |", "|---|---|---|"]
    for mu in r["matchups"]:
        for v in mu["variants"]:
            failed = f" FAILED ({v['error']})".replace("|", "/") if v["error"] else ""
            lines.append(f"| {mu['name']} | {v['label']} | {', '.join(map(str, v['sps'])) or '-'}{failed} |")
    lines += ["", "SPS: ours, the last `charts/SPS` of `metrics.jsonl` (steps / training seconds, start-up excluded); "
              "CleanRL, its last printed `SPS:`; SB3 and sb3-contrib print none: env steps / seconds of `learn()`, "
              "the model built before the clock starts (`benchmarks/peers.py`); raw env: random actions, no learner."]
    lines += [f"- {mu['name']}: {mu['note']}" for mu in r["matchups"] if mu["note"]]
    if r["skipped"]:
        lines += ["", "Skipped: " + "; ".join(r["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def fmt(sps) -> str:
    return "-" if sps is None else f"{sps:.0f}"


def main() -> None:
    ours_argv, extra = split_argv(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--env-id", default="CartPole-v1", choices=sorted({m.env_id for m in MATCHUPS}),
                       help="run every matchup on this env (default CartPole-v1)")
    which.add_argument("--matchups", nargs="+", choices=[m.name for m in MATCHUPS], metavar="NAME",
                       help="run these matchups (--list shows them)")
    parser.add_argument("--list", action="store_true", help="print the matchups and their settings, run nothing")
    parser.add_argument("--total-timesteps", type=int,
                        help="env steps per run, rounded up to whole rollouts (default: CartPole-v1 100000, "
                             "HalfCheetah-v5 20480)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peers-python", default="/tmp/peers-venv/bin/python",
                        help="Python of the peers' benchmark venv (SB3, sb3-contrib, CleanRL's dependencies)")
    parser.add_argument("--cleanrl-ppo", default="/tmp/cleanrl/ppo.py", help="CleanRL's cleanrl/ppo.py")
    parser.add_argument("--name", help="result files benchmarks/results/<name>.json and .md "
                                       "(default speed_<env>, e.g. speed_cartpole)")
    parser.add_argument("--out-dir", default=RESULTS, help="directory of the result files")
    args = parser.parse_args(ours_argv)
    chosen = [m for m in MATCHUPS if m.name in args.matchups] if args.matchups else \
        [m for m in MATCHUPS if m.env_id == args.env_id]
    if args.list:
        presets = run_py_presets()
        for m in chosen if args.matchups else MATCHUPS:
            flags, origin = our_flags(m, presets)
            against = "; ".join(p.label for p in m.peers) or "the raw env only"
            print(f"{m.name:26} {m.script} on {m.env_id} vs {against}\n{'':26} {describe(m, flags, origin)}")
        return
    # Absolute, since every run's working directory is a temporary one (never written to the results).
    args.cleanrl_ppo = os.path.abspath(args.cleanrl_ppo)
    args.peers_python = os.path.abspath(shutil.which(args.peers_python) or args.peers_python)

    info, skipped = peers_info(args.peers_python, args.cleanrl_ppo), []
    if info.get("cleanrl_ppo_py", {}).get("commit") == "unknown":
        print(f"note: CleanRL's ppo.py is not blob {CLEANRL_BLOB} (commit {CLEANRL_COMMIT[:8]}): its blob is recorded")
    todo = plan(chosen, args, extra, info, skipped)
    if not todo:
        sys.exit("nothing to run: " + "; ".join(skipped))
    measure(todo, args.repeats)
    result = report(todo, args, extra, info, skipped, recorded_command(sys.argv[1:]))
    table = markdown(result)
    print("\n" + table)
    envs = dict.fromkeys(m.env_id.split("-")[0].lower() for m, *_ in todo)
    name = args.name or "speed_" + "_".join(envs)
    os.makedirs(args.out_dir, exist_ok=True)
    for ext, text in (("json", json.dumps(result, indent=1) + "\n"), ("md", table)):
        path = os.path.join(args.out_dir, f"{name}.{ext}")
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
