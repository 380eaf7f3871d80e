"""The family's shape, read from the scripts' text: one plumbing section, byte-identical in all
seven scripts; the helpers several scripts share, identical; the skeleton's order; lines of at most
100 columns. Because the plumbing is the same bytes everywhere, a test of one script's copy of a
plumbing function covers the other six."""

import ast
import glob
import os
import re

import pytest

from conftest import ROOT
from test_scripts import LADDER

BANNER = "# Plumbing"  # the banner's text line (between two lines of '=')
VECTOR = {"actor_critic.py", "npg.py", "trpo.py", "ppo_kl.py", "ppo_clip.py"}
# Plumbing a script may lack, and why. Everything else below the banner is the same in all seven.
ONLY_IN = {
    "rollout_buffers": (
        VECTOR,
        "fixed-length segments; reinforce and vpg_baseline collect whole "
        "episodes of separate envs, row by row",
    ),
    "explained_variance": (set(LADDER) - {"reinforce.py"}, "REINFORCE has no critic"),
}
# Shared by name but each script's own: the algorithm itself.
OWN = {"Args", "Agent", "train"}
# Agent's methods that differ, and why (every other method shared by two scripts is identical).
AGENT_OWN = {"__init__": "reinforce has no critic; actor_critic can share the critic's trunk"}
COMMON_FLAGS = [
    "exp_name",
    "seed",
    "torch_deterministic",
    "cuda",
    "torch_threads",
    "track",
    "wandb_project_name",
    "wandb_entity",
    "capture_video",
    "save_model",
    "eval_episodes",
    "eval_checkpoint",
    "norm_obs",
    "norm_reward",
]
# Flags whose help says something else in some scripts, and why.
FLAG_HELP_DIFFERS = {
    "learning_rate": "vpg_baseline has two optimizers (the policy's, the critic's)",
    "max_grad_norm": "vpg_baseline clips the policy's gradient only",
    "anneal_lr": "vpg_baseline decays the policy's learning rate only",
    "num_steps": "reinforce and vpg_baseline finish the episode in flight after num_steps",
    "gae_lambda": "what lambda = 1 (vpg_baseline) or 0 (actor_critic) gives there",
    "norm_adv": "reinforce standardises the returns G, there being no advantage",
    "max_kl": "npg sets its step's quadratic KL model to delta, trpo bounds the exact KL by it",
}


def text(script: str) -> str:
    with open(os.path.join(ROOT, script)) as f:
        return f.read()


def split(script: str) -> tuple[str, str]:
    """(the algorithm's part, the plumbing): the file cut at the banner's first '=' line."""
    lines = text(script).splitlines(keepends=True)
    banner = next(i for i, line in enumerate(lines) if line.startswith(BANNER))
    return "".join(lines[: banner - 1]), "".join(lines[banner - 1 :])


def definitions(source: str) -> dict[str, str]:
    """Top-level functions and classes of a piece of source: name -> source text."""
    return {
        node.name: ast.get_source_segment(source, node)
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }


def test_the_plumbing_is_byte_identical_in_every_script():
    """Below the banner every script has the same bytes, apart from the ONLY_IN definitions, which
    exist exactly in the scripts listed there (and are then identical too). Catches: a fix made in
    one copy."""
    trimmed = {}
    for script in LADDER:
        plumbing = split(script)[1]
        defs = definitions(plumbing)
        for name, (scripts, _) in ONLY_IN.items():
            assert (name in defs) == (script in scripts), f"{name} in {script}"
            if name in defs:
                plumbing = plumbing.replace(defs[name] + "\n\n\n", "")
        trimmed[script] = plumbing
    reference = trimmed["ppo_clip.py"]
    for script in LADDER:
        assert trimmed[script] == reference, f"{script}'s plumbing differs from ppo_clip.py's"
    for name, (scripts, _) in ONLY_IN.items():
        assert len({definitions(split(s)[1])[name] for s in scripts}) == 1, name


def test_helpers_shared_by_several_scripts_are_identical():
    """A function, class or Agent method that two scripts both define is the same text in both (but
    for OWN and AGENT_OWN): normalize_advantages, value_loss, mean_kl, log_prob_entropy, dist, the
    trust region's functions in npg.py and trpo.py, ..."""
    seen: dict[str, dict[str, str]] = {}
    for script in LADDER:
        algorithm = split(script)[0]
        for name, source in definitions(algorithm).items():
            seen.setdefault(name, {})[script] = source
        agent = next(
            node
            for node in ast.parse(algorithm).body
            if isinstance(node, ast.ClassDef) and node.name == "Agent"
        )
        for method in agent.body:
            if isinstance(method, ast.FunctionDef) and method.name not in AGENT_OWN:
                seen.setdefault(f"Agent.{method.name}", {})[script] = ast.get_source_segment(
                    algorithm, method
                )
    shared = {name: by for name, by in seen.items() if len(by) > 1 and name not in OWN}
    assert {
        "normalize_advantages",
        "value_loss",
        "mean_kl",
        "approx_kl",
        "policy_gradient_loss",
        "conjugate_gradient",
        "fisher_vector_product",
        "natural_step",
        "Agent.log_prob_entropy",
        "Agent.dist",
        "Agent.policy_params",
        "Agent.value",
    } <= set(shared)
    for name, by in shared.items():
        assert len(set(by.values())) == 1, f"{name} differs between {sorted(by)}"


def args_fields(script: str) -> dict[str, tuple[str, str]]:
    """Args's fields: name -> (its line, its help docstring)."""
    source = text(script)
    node = next(
        n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Args"
    )
    fields, body = {}, node.body
    for item, after in zip(body, body[1:] + [None]):
        if isinstance(item, ast.AnnAssign):
            help_ = after.value.value if isinstance(after, ast.Expr) else None
            fields[item.target.id] = (ast.get_source_segment(source, item), help_)
    return fields


def test_flags_mean_the_same_in_every_script():
    """The run's flags (seed, tracking, checkpoints, normalisation) are the same lines with the same
    help in all seven; a flag two scripts share has the same help unless FLAG_HELP_DIFFERS says why
    not. Every flag has a help docstring (tyro shows it in --help)."""
    fields = {script: args_fields(script) for script in LADDER}
    for name in COMMON_FLAGS:
        assert len({fields[script][name] for script in LADDER}) == 1, name
    helps: dict[str, set] = {}
    for script, flags in fields.items():
        for name, (_, help_) in flags.items():
            assert help_, f"{script}: --{name} has no help"
            helps.setdefault(name, set()).add(help_)
    differing = {name for name, variants in helps.items() if len(variants) > 1}
    assert differing <= set(FLAG_HELP_DIFFERS), differing - set(FLAG_HELP_DIFFERS)


@pytest.mark.parametrize("script", LADDER)
def test_the_algorithm_comes_first(script):
    """The skeleton: the module docstring (with a run command), imports, Args, the algorithm's
    functions, Agent, train(), the banner, the plumbing, __main__; train() starts in the first 55 %
    of the file."""
    source = text(script)
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree)
    assert docstring and f"python {script}" in docstring
    body = tree.body[1:]
    kinds = [type(node).__name__ for node in body]
    first_def = next(
        i for i, node in enumerate(body) if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    )
    assert all(
        k in ("Import", "ImportFrom", "Expr") for k in kinds[:first_def]
    )  # imports, settings
    names = [getattr(node, "name", None) for node in body]
    assert names[first_def] == "Args"
    train, agent = names.index("train"), names.index("Agent")
    assert first_def < agent < train and names[agent + 1] == "train"
    banner = next(i + 1 for i, line in enumerate(source.splitlines()) if line.startswith(BANNER))
    assert body[train].end_lineno < banner < body[train + 1].lineno
    assert isinstance(body[-1], ast.If) and "__main__" in ast.get_source_segment(
        source, body[-1].test
    )
    assert body[train].lineno < 0.55 * len(source.splitlines())
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    local = {os.path.splitext(f)[0] for f in os.listdir(ROOT) if f.endswith(".py")}
    project = {
        n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in imports
    } & local
    assert project <= {"gae"}  # the only project import


TESTS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "tests", "*.py")))


@pytest.mark.parametrize("path", [*LADDER, "gae.py", *TESTS])
def test_lines_are_at_most_100_columns(path):
    """The scripts, gae.py and the tests: the limit of pyproject.toml's [tool.ruff] line-length."""
    long = [i + 1 for i, line in enumerate(text(path).splitlines()) if len(line) > 100]
    assert not long, f"{path}: lines {long} are longer than 100 columns"


def test_the_ladder_reads_in_order():
    """Each script names the ideas of the lecture it implements: a cheap guard against a docstring
    pasted from the neighbour (the first line names the algorithm)."""
    titles = {
        "reinforce.py": "REINFORCE",
        "vpg_baseline.py": "baseline",
        "actor_critic.py": "actor-critic",
        "npg.py": "Natural policy gradient",
        "trpo.py": "Trust region",
        "ppo_kl.py": "KL penalty",
        "ppo_clip.py": "clipped surrogate",
    }
    for script, title in titles.items():
        assert re.search(
            re.escape(title), ast.get_docstring(ast.parse(text(script))).splitlines()[0]
        )
