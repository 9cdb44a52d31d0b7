"""The package's shape: one subpackage per family, no import cycles, every
module importable on its own, the old shims gone."""

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import localgrad

PACKAGE = Path(localgrad.__file__).resolve().parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(path: Path, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of localgrad that `module` imports, at the top or inside a
    function: a deferred import hides a cycle from the interpreter, not from
    the design."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    # Importing a module runs its parent packages first; that is no cycle.
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return {m for m in found if m in known and m != module and m not in ancestors}


def test_no_import_cycles():
    modules = module_names()
    known = set(modules)
    graph = {
        name: imported_modules(path, name, path.name == "__init__.py", known) for name, path in modules.items()
    }
    state, stack, cycles = {}, [], []

    def walk(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# Runs in a subprocess: torch is imported once, then each module is imported
# in a forked child, which starts with no localgrad module loaded.
FORK_IMPORTS = """
import os, sys, traceback
import torch
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name)
print("FAILED:" + ",".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_in_a_fresh_interpreter():
    names = [n for n in module_names() if n not in ("localgrad.__main__", "localgrad.nn", "localgrad.rules")]
    done = subprocess.run([sys.executable, "-c", FORK_IMPORTS, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-500:] + done.stderr[-4000:]
    assert done.stdout.strip() == "FAILED:"


@pytest.mark.parametrize("family", localgrad.FAMILIES)
def test_each_family_is_one_subpackage_reached_from_the_package(family):
    module = getattr(localgrad, family)
    assert module.__name__ == f"localgrad.{family}"
    assert Path(module.__file__).name == "__init__.py"
    assert family in dir(localgrad)
    for name in module.__all__:
        assert hasattr(module, name), (family, name)


def test_unknown_attribute_still_raises():
    with pytest.raises(AttributeError, match="no attribute 'not_a_family'"):
        localgrad.not_a_family


@pytest.mark.parametrize("old", ["localgrad.nn", "localgrad.rules", "localgrad.convert"])
def test_the_never_released_shims_are_gone(old):
    sys.modules.pop(old, None)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def test_rules_and_convert_are_the_functions():
    assert callable(localgrad.rules) and callable(localgrad.convert) and callable(localgrad.learner)
    assert localgrad.rules is sys.modules["localgrad.learner"].rules
