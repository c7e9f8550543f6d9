"""The package layout: every import goes to the module's own layer or below, no cycles, argparse only in the
CLI, no private name or facade across modules, and every module within its size limits."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "molret"

# Layer of each subpackage (a module imports only from its own layer or below). molret/__init__.py, the public
# surface, is above them all: it loads molret.api on first use of MolRetriever.
LAYERS = {"utils": 1, "config": 2, "chem": 2, "data": 3, "names": 3, "models": 4, "ranking": 5, "evaluation": 5,
          "training": 6, "library": 6, "search": 7, "api": 8, "web": 9, "cli": 9}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list:
    """(line, imported molret module, imported names) of every import in ``path``, lazy ones included."""
    out = []
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("molret")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("molret"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            out += [(node.lineno, m, []) for m in submodules] or [(node.lineno, base, names)]
    return out


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 10


def edges() -> dict:
    return {m: {(line, target, tuple(names)) for line, target, names in imports_of(p)} for m, p in MODULES.items()}


def test_every_subpackage_has_a_layer():
    top = {m.split(".")[1] for m in MODULES if m.count(".") >= 1}
    assert top == set(LAYERS), top ^ set(LAYERS)


def upward(edge_map: dict) -> list:
    """The imports of ``edge_map`` (module -> {(line, target, names)}) that go to a higher layer."""
    return [f"{m}:{line} imports {t} (layer {layer(t)} > {layer(m)})"
            for m, es in edge_map.items() for line, t, _ in es if layer(t) > layer(m) and m != "molret"]


def find_cycles(graph: dict) -> list:
    """The import cycles of ``graph`` (module -> modules it imports), each as a path back to its start."""
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_upward_import():
    bad = upward(edges())
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph = {m: {t for _, t, _ in es if t in MODULES and t != m} for m, es in edges().items()}
    graph["molret"] = set()    # the public surface loads molret.api on first use; nothing imports a name from it
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_catch_an_upward_import_a_cycle_and_a_lazy_relative_import(tmp_path, monkeypatch):
    """The checks above are not vacuous: on made-up modules they find what they must."""
    assert upward({"molret.utils.files": {(3, "molret.search.engine", ())},
                   "molret.search.engine": {(5, "molret.utils.files", ())}}) == [
        "molret.utils.files:3 imports molret.search.engine (layer 7 > 1)"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    fake = tmp_path / "molret" / "utils" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..search import engine\n    from .files import atomic_write_text\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setitem(MODULES, "molret.search.engine", None)
    assert {t for _, t, _ in imports_of(fake)} == {"molret.search.engine", "molret.utils.files"}


def test_argparse_only_in_the_cli():
    bad = [m for m, p in MODULES.items() if ".cli." not in m + "." and
           any(isinstance(n, (ast.Import, ast.ImportFrom)) and "argparse" in ast.dump(n)
               for n in ast.walk(ast.parse(p.read_text())))]
    assert not bad, bad


def test_no_private_name_imported_across_modules():
    bad = [f"{m}:{line} imports {t}.{n}" for m, es in edges().items() for line, t, names in es
           for n in names if n.startswith("_") and not n.startswith("__")]
    for path in [*ROOT.glob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("molret"):
                bad += [f"{path.name}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_no_private_attribute_of_another_module():
    """``module._name`` of an imported molret module is a private name crossing modules too."""
    bad = []
    for path in [*MODULES.values(), *ROOT.glob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        tree = ast.parse(path.read_text())
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("molret") for a in n.names}
        aliases |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names if a.name.startswith("molret")}
        bad += [f"{path.name}:{n.lineno} uses {n.value.id}.{n.attr}" for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                and n.attr.startswith("_") and not n.attr.startswith("__")]
    assert not bad, "\n".join(bad)


def test_no_facade_re_export():
    """A module imports a molret name only to use it (the top-level dataloader.py and model.py shims aside)."""
    bad = []
    for m, p in MODULES.items():
        tree = ast.parse(p.read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
        text = p.read_text()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("molret") or (
                    isinstance(node, ast.ImportFrom) and node.level):
                for a in node.names:
                    local = a.asname or a.name
                    if local not in used and f"'{local}'" not in text and f'"{local}"' not in text:
                        bad.append(f"{m}:{node.lineno} imports {local} without using it")
    assert not bad, "\n".join(bad)


def test_no_alias_modules_left():
    """The flat modules moved into subpackages are gone (no module that only re-exports another)."""
    flat = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "config"))
    assert not flat, flat


def test_inference_modules_do_not_import_the_trainer():
    code = ("import molret.search.engine, molret.cli.predictions, molret.api.predictions, molret.ranking.ensemble, "
            "molret.cli.search, molret.cli.serve, molret.library.shards, molret.cli.embed_library; import sys; "
            "assert 'molret.training.trainer' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith('molret'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_submission_enters_no_cli_module_but_its_own():
    """predictions.py's job runs through the API and the engines: after it, the only CLI modules loaded are
    predictions.py's own and the shared flag plumbing it parses with."""
    code = ("import sys, molret.cli.predictions; "
            "print(sorted(m for m in sys.modules if m.startswith('molret.cli')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = set(eval(done.stdout))
    assert loaded <= {"molret.cli", "molret.cli.predictions", "molret.cli.common", "molret.cli.flags"}, loaded
    engine = ast.parse((PACKAGE / "api" / "predictions.py").read_text())
    assert not [n for n in ast.walk(engine) if isinstance(n, ast.ImportFrom) and "cli" in (n.module or "")]


def _is_parser_builder(name: str) -> bool:
    """argparse builders (build_parser, parser, embed_parser, add_index_args, ...) may be longer."""
    return name in ("build_parser", "parser") or name.endswith("_parser") or (
        name.startswith("add_") and name.endswith("_args"))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_sizes(name):
    """Issue 11: at most 400 lines a module, 250 a class, 60 a function (argparse builders aside), in every
    subpackage."""
    source = MODULES[name].read_text()
    assert len(source.splitlines()) <= 400, name
    for node in ast.walk(ast.parse(source)):
        size = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
        if isinstance(node, ast.ClassDef):
            assert size <= 250, f"{name}: class {node.name} has {size} lines"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_parser_builder(node.name):
            assert size <= 60, f"{name}: {node.name} has {size} lines"


# ------------------------------------------------------------ the whole tree: top-level scripts (issue 33)

SCRIPTS = {p.stem: p for p in sorted(ROOT.glob("*.py"))}
SHIMS = {"dataloader", "model"}          # re-export shims of molret.data / molret.models for old imports
SCRIPT_LINES, MAIN_LINES = 40, 30


def script_defects(name: str, source: str) -> list:
    """What makes the top-level script ``name`` more than a thin entry point: argparse, a class or a function
    beside ``main``, a long ``main``, a module-level molret import (heavy at import), no ``__main__`` guard,
    too many lines. Imports inside functions count as the others do."""
    tree = ast.parse(source)
    bad = [f"{name}:{n.lineno} imports argparse" for n in ast.walk(tree)
           if isinstance(n, (ast.Import, ast.ImportFrom)) and "argparse" in ast.dump(n)]
    if len(source.splitlines()) > SCRIPT_LINES:
        bad.append(f"{name} has {len(source.splitlines())} lines (> {SCRIPT_LINES})")
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    bad += [f"{name}:{n.lineno} defines {n.name} (only main)" for n in defs if n.name != "main"]
    bad += [f"{name}: main has {n.end_lineno - n.lineno + 1} lines (> {MAIN_LINES})" for n in defs
            if n.name == "main" and n.end_lineno - n.lineno + 1 > MAIN_LINES]
    if not any(n.name == "main" for n in defs):
        bad.append(f"{name} has no main(argv=None)")
    bad += [f"{name}:{n.lineno} imports {getattr(n, 'module', None) or n.names[0].name} at import time"
            for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and
            (getattr(n, "module", None) or n.names[0].name).startswith("molret") and
            (getattr(n, "module", None) or "") != "molret.utils.errors"]
    if "if __name__ == \"__main__\":\n    main()" not in source:
        bad.append(f"{name} has no `if __name__ == \"__main__\": main()`")
    return bad


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - SHIMS))
def test_top_level_scripts_are_thin_entry_points(name):
    """Parsing lives in molret/cli/, engines in their layer: a top-level script is a docstring and a main."""
    bad = script_defects(name, SCRIPTS[name].read_text())
    assert not bad, "\n".join(bad)


def test_the_shims_only_re_export():
    for name in SHIMS:
        tree = ast.parse(SCRIPTS[name].read_text())
        assert all(isinstance(n, (ast.ImportFrom, ast.Expr)) for n in tree.body), name


def test_no_molret_module_imports_a_top_level_script():
    """The package never reaches back into the entry points (lazy imports in functions included)."""
    bad = [f"{m}:{line} imports {x}" for m, p in MODULES.items() for line, x in script_imports(p.read_text())]
    assert not bad, "\n".join(bad)


def script_imports(source: str) -> list:
    """(line, name) of every import of a top-level script in ``source``, those inside functions included."""
    out = []
    for n in ast.walk(ast.parse(source)):
        names = [a.name for a in n.names] if isinstance(n, ast.Import) else (
            [n.module] if isinstance(n, ast.ImportFrom) and not n.level and n.module else [])
        out += [(n.lineno, x) for x in names if x.split(".")[0] in SCRIPTS]
    return out


def test_scripts_load_nothing_heavy_at_import():
    code = (f"import sys, {', '.join(sorted(set(SCRIPTS) - SHIMS))}; "
            "print(sorted(m for m in ('torch', 'numpy', 'rdkit', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_the_script_checks_catch_argparse_an_engine_and_lazy_imports():
    """The checks above are not vacuous: a made-up script with argparse inside main, a second function, a
    class and a module-level molret import is refused on each count; a thin one passes."""
    fat = ("import numpy\nfrom molret.training.trainer import Trainer\n\n\nclass Engine:\n    pass\n\n\n"
           "def helper():\n    pass\n\n\ndef main(argv=None):\n    import argparse\n    return argparse\n")
    bad = script_defects("fat", fat)
    assert any("imports argparse" in b for b in bad), bad
    assert any("defines Engine" in b for b in bad) and any("defines helper" in b for b in bad), bad
    assert any("molret.training.trainer at import time" in b for b in bad), bad
    assert any("__main__" in b for b in bad), bad
    assert script_defects("long", "def main(argv=None):\n" + "    x = 1\n" * 40) != []
    thin = ('"""Doc."""\nfrom molret.utils.errors import user_errors\n\n\n@user_errors\ndef main(argv=None):\n'
            '    from molret.cli.search import build_parser, run\n    return run(build_parser().parse_args(argv))\n'
            '\n\nif __name__ == "__main__":\n    main()\n')
    assert script_defects("thin", thin) == []
    assert script_imports("import os\n\n\ndef f():\n    from labels import main\n    import recipe\n") == [
        (5, "labels"), (6, "recipe")]
