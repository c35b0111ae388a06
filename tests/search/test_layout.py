"""The package's layout keeps the map in ``search/__init__.py``: every module is on it, none imports
one from a stage above its own, no import leads back to where it started, and no function is
longer than a screen and a half unless its docstring says why."""

import ast
import re

import pytest

from tests.conftest import ROOT

SEARCH = ROOT / "search"
LONGEST = 80  # lines


def stages() -> dict[str, int]:
    """The stage of every module, as the map in search/__init__.py's docstring gives it."""
    doc = ast.get_docstring(ast.parse((SEARCH / "__init__.py").read_text()))
    out, stage = {}, None
    for line in doc.splitlines():
        m = re.match(r"\s+(?:(\d) [a-z ]+?\s{2,})?(\S+\.py|\S+/)\s{2,}", line)
        if not m:
            continue
        stage = int(m[1]) if m[1] is not None else stage
        out[m[2].removesuffix(".py").removesuffix("/")] = stage
    return out


def module_of(path) -> str:
    """``search/bench/harness.py`` -> ``bench.harness``; a package's __init__ is the package."""
    parts = path.relative_to(SEARCH).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_of(p): ast.parse(p.read_text()) for p in sorted(SEARCH.rglob("*.py"))}


PACKAGES = {module_of(p.parent / "__init__.py") for p in SEARCH.rglob("__init__.py")} - {""}


def imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports, at the top or inside a function."""
    package = name.split(".") if name in PACKAGES else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                target = f"{stem}.{alias.name}" if stem else alias.name
                found.add(target if target in known else stem)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("search."):
            found.add(node.module.removeprefix("search."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("search.") for a in node.names if a.name.startswith("search.")}
    return {m for m in found if m in known and m != name}


def stage_of(module: str, stage: dict[str, int]) -> int:
    return stage[module] if module in stage else stage[module.split(".")[0]]


def test_the_map_lists_every_module():
    stage = stages()
    listed = set(stage)
    found = {m.split(".")[0] for m in modules()} - {""}  # "" is the package itself
    assert found - {"__main__"} == listed
    assert sorted(set(stage.values())) == list(range(10))


def test_no_module_imports_one_from_a_stage_above_its_own():
    stage, trees = stages(), modules()
    known = set(trees)
    above = []
    for name, tree in trees.items():
        if name in ("", "__main__"):  # the package's lazy names; `python -m search` is the CLI
            continue
        for target in imports(name, tree, known):
            if target and stage_of(target, stage) > stage_of(name, stage):
                above.append(f"{name} ({stage_of(name, stage)}) imports {target} ({stage_of(target, stage)})")
    assert above == []


def test_no_import_circle():
    trees = modules()
    known = set(trees)
    graph = {name: imports(name, tree, known) - {""} for name, tree in trees.items() if name}

    def circle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    circles = [c for c in map(circle_from, graph) if c]
    assert circles == []


def test_the_import_check_finds_what_it_must():
    """A check that cannot fail is no check: relative imports at any depth, in functions too."""
    tree = ast.parse(
        "from ..tracking import Store\nfrom . import harness\ndef f():\n    from .. import driver\n"
    )
    known = {"tracking", "bench.harness", "driver", "bench"}
    assert imports("bench.overhead", tree, known) == {"tracking", "bench.harness", "driver"}
    assert stage_of("bench.harness", {"bench": 9}) == 9


def functions():
    for path in sorted(SEARCH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT), node


def test_no_function_is_longer_than_80_lines_unless_it_says_why():
    long = [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, node in functions()
        if node.end_lineno - node.lineno + 1 > LONGEST and "on purpose" not in (ast.get_docstring(node) or "")
    ]
    assert long == []


@pytest.mark.parametrize("name", ["run", "bench", "cli", "trial", "driver"])
def test_the_map_names_the_stages_of_the_data_flow(name):
    assert name in stages()
