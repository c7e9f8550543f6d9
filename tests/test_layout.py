"""The module layout: inference does not depend on training; modules stay within their size limits."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_inference_modules_do_not_import_the_trainer():
    code = ("import molret.search, molret.predict, molret.ensemble, molret.search_cli, molret.shards, "
            "molret.shard_cli; import sys; "
            "assert 'molret.train' not in sys.modules, sorted(m for m in sys.modules if m.startswith('molret'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _is_parser_builder(name: str) -> bool:
    """argparse builders (build_parser, parser, embed_parser, add_index_args, ...) may be longer."""
    return name in ("build_parser", "parser") or name.endswith("_parser") or (
        name.startswith("add_") and name.endswith("_args"))


MODULES = sorted(p.name for p in (ROOT / "molret").glob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_module_sizes(name):
    """Issue 11: at most 400 lines a module, 250 a class, 60 a function (argparse builders aside)."""
    path = ROOT / "molret" / name
    source = path.read_text()
    assert len(source.splitlines()) <= 400, name
    for node in ast.walk(ast.parse(source)):
        size = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
        if isinstance(node, ast.ClassDef):
            assert size <= 250, f"{name}: class {node.name} has {size} lines"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_parser_builder(node.name):
            assert size <= 60, f"{name}: {node.name} has {size} lines"
