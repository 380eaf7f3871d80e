"""The docs cannot rot: every relative link and image of README.md, docs/ and benchmarks/README.md
resolves, and every function, method or test a page names exists where the page says it is.

Conventions of the pages (docs/README.md repeats them for writers): - `file.py::name` (or
`tests/test_x.py::test_name`, `file.py::Agent.dist`) names a definition in that file: a top-level
function or class, a method, or a module-level constant. - In docs/<script>.md, a call written in
backticks, `name(...)` or `Agent.method(...)`, names a definition of <script> or of gae.py
(pseudocode lines refer to the code this way). - A test named in backticks, `test_...`, exists in
tests/."""

import ast
import glob
import os
import re

import pytest

from conftest import ROOT

PAGES = sorted([
    os.path.join(ROOT, "README.md"),
    os.path.join(ROOT, "benchmarks", "README.md"),
    *glob.glob(os.path.join(ROOT, "docs", "*.md")),
])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
QUALIFIED = re.compile(r"`([\w/.-]+\.py)::([\w.]+)`")
CALL = re.compile(r"`((?:Agent|Run)\.)?([a-z_][a-z0-9_]*)\(")
TEST = re.compile(r"`(test_\w+)")


def defined(path: str) -> set[str]:
    """The names a Python file defines: functions, classes, Class.method, module-level constants."""
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {
                    f"{node.name}.{m.name}" for m in node.body if isinstance(m, ast.FunctionDef)
                }
                names |= {
                    f"{node.name}.{m.target.id}"
                    for m in node.body
                    if isinstance(m, ast.AnnAssign) and isinstance(m.target, ast.Name)
                }
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def all_tests() -> set[str]:
    return set().union(*(defined(p) for p in glob.glob(os.path.join(ROOT, "tests", "test_*.py"))))


def prose(page: str) -> str:
    """The page's text without its fenced code blocks of shell commands (they name no
    definitions)."""
    with open(page) as f:
        text = f.read()
    return re.sub(r"```(?:bash|sh|console)\n.*?```", "", text, flags=re.S)


def test_there_is_a_page_per_script():
    for script in (
        "reinforce",
        "vpg_baseline",
        "actor_critic",
        "npg",
        "trpo",
        "ppo_kl",
        "ppo_clip",
    ):
        assert os.path.isfile(os.path.join(ROOT, "docs", f"{script}.md")), script


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_links_and_images_resolve(page):
    with open(page) as f:
        text = f.read()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address, or an anchor of this page
        path = os.path.normpath(os.path.join(os.path.dirname(page), target.split("#")[0]))
        if not os.path.exists(path):
            broken.append(target)
    assert not broken, f"{os.path.relpath(page, ROOT)}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_named_definitions_exist(page):
    text, missing = prose(page), []
    for file, name in QUALIFIED.findall(text):
        path = os.path.join(ROOT, file)
        if not os.path.isfile(path) or name not in defined(path):
            missing.append(f"{file}::{name}")
    script = os.path.join(ROOT, os.path.basename(page)[:-3] + ".py")
    if os.path.dirname(page).endswith("docs") and os.path.isfile(script):
        known = defined(script) | defined(os.path.join(ROOT, "gae.py"))
        for owner, name in CALL.findall(text):
            if (owner + name) not in known and owner + name not in BUILTIN_CALLS:
                missing.append(f"{os.path.basename(script)}: {owner}{name}()")
    tests = all_tests()
    missing += [name for name in TEST.findall(text) if name not in tests]
    assert not missing, f"{os.path.relpath(page, ROOT)} names what does not exist: {missing}"


BUILTIN_CALLS = {
    "len",
    "min",
    "max",
    "sum",
    "exp",
    "log",
    "sqrt",
    "clip",
    "mean",
    "std",
    "softmax",
    "argmax",
    "train",
}


def test_the_checker_catches_a_renamed_function_and_a_broken_link(tmp_path):
    """The checks above have teeth: a page naming a function or test that is not there, or linking
    to a missing file, fails."""
    page = tmp_path / "docs" / "ppo_clip.md"
    page.parent.mkdir()
    page.write_text(
        "`ppo_clip.py::clipped_surrogate` is there; `clipped_surrogat(ratio)`, "
        "`ppo_clip.py::Agent.sampler` and `test_no_such_test` are not; [x](missing.md)\n"
    )
    with pytest.raises(AssertionError) as failure:
        test_named_definitions_exist(str(page))
    for name in ("clipped_surrogat()", "Agent.sampler", "test_no_such_test"):
        assert name in str(failure.value)
    assert "clipped_surrogate`" not in str(failure.value)
    with pytest.raises(AssertionError, match="missing.md"):
        test_links_and_images_resolve(str(page))
