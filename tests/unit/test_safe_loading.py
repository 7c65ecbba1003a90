"""Remote code runs only when the user asks for it, and only safetensors weights are loaded (a pickled .bin
can run code too). Checked on the source, so a new ``from_pretrained`` or ``LLM(...)`` that forgets either
fails here, not in a user's hands; the refusal of a .bin-only folder is in test_errors_model_folder.py."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import compress
from compress.cli import build_parser

ROOT = Path(compress.__file__).parents[1]
SOURCES = sorted(Path(compress.__file__).parent.rglob("*.py"))
# vLLM's "dummy" format reads no file at all (random weights, for the speed benchmarks).
SAFE_FORMATS = {"safetensors", "dummy"}


def _calls() -> list[tuple[str, ast.Call]]:
    found = []
    for file in SOURCES:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ("from_pretrained", "LLM", "oneshot"):
                    found.append((f"{file.relative_to(ROOT)}:{node.lineno}", node))
    return found


def _is(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is type(value) and node.value == value


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_the_audit_sees_the_loads() -> None:
    where = {w.split(":")[0] for w, _ in _calls()}
    assert {"compress/builders/common.py", "compress/engines/hf_engine.py", "compress/engines/vllm_engine.py"} <= where


def test_nothing_turns_remote_code_on_by_itself() -> None:
    """No ``trust_remote_code=True`` (or llm-compressor's ``trust_remote_code_model``), as a keyword or as a
    dict entry for ``LLM(**kwargs)``: it is on only where a user's flag or recipe passes it through."""
    names = ("trust_remote_code", "trust_remote_code_model")
    hard_coded, seen = [], 0
    for file in SOURCES:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            values = []
            if isinstance(node, ast.keyword) and node.arg in names:
                values.append(node.value)
            elif isinstance(node, ast.Dict):
                values += [v for k, v in zip(node.keys, node.values, strict=True) if any(_is(k, n) for n in names)]
            seen += len(values)
            hard_coded += [f"{file.relative_to(ROOT)}:{v.lineno}" for v in values if _is(v, True)]
    assert seen >= 10 and hard_coded == []


@pytest.mark.parametrize(
    ("where", "call"),
    [(w, c) for w, c in _calls() if ast.unparse(c.func).startswith("AutoModel")],
    ids=[w for w, c in _calls() if ast.unparse(c.func).startswith("AutoModel")],
)
def test_every_hf_model_load_is_safetensors_only(where: str, call: ast.Call) -> None:
    """``use_safetensors=True``: transformers then never falls back to a .bin; the one GGUF read (SmolLM2 from
    its PyPI package) names its file explicitly."""
    safe = _keyword(call, "use_safetensors")
    assert (isinstance(safe, ast.Constant) and safe.value is True) or _keyword(call, "gguf_file") is not None, where


def _defaults(args: ast.arguments) -> dict[str, ast.expr | None]:
    """Each parameter's default expression (None: it has none)."""
    positional = args.posonlyargs + args.args
    padded = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, padded, strict=True)) + list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    return {a.arg: d for a, d in pairs}


def test_every_function_that_takes_trust_remote_code_defaults_to_off() -> None:
    offenders, seen = [], 0
    for file in SOURCES:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defaults = _defaults(node.args)
                if "trust_remote_code" in defaults:
                    seen += 1
                    default = defaults["trust_remote_code"]
                    if not (isinstance(default, ast.Constant) and default.value is False):
                        offenders.append(f"{file.name}:{node.lineno} {node.name}")
    assert seen >= 10 and offenders == []


def _load_formats(tree: ast.AST) -> list[ast.expr]:
    """Every value given as ``load_format=...`` or as a ``"load_format": ...`` dict entry."""
    values: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "load_format":
            values.append(node.value)
        elif isinstance(node, ast.Dict):
            values += [v for k, v in zip(node.keys, node.values, strict=True) if _is(k, "load_format")]
    return values


def test_vllm_is_handed_safetensors_only() -> None:
    """The engine's default is safetensors, and every load_format written anywhere is one that reads no
    pickle; the only non-literal one is the engine's own parameter."""
    from compress.engines.vllm_engine import llm_kwargs

    assert inspect.signature(llm_kwargs).parameters["load_format"].default == "safetensors"
    bad = []
    for file in SOURCES:
        for value in _load_formats(ast.parse(file.read_text(encoding="utf-8"))):
            literal_ok = isinstance(value, ast.Constant) and value.value in SAFE_FORMATS
            engine_param = file.name == "vllm_engine.py" and ast.unparse(value) == "load_format"
            if not (literal_ok or engine_param):
                bad.append(f"{file.relative_to(ROOT)}:{value.lineno} load_format={ast.unparse(value)}")
    assert bad == []


def test_user_facing_switches_are_off_by_default(tmp_path: Path) -> None:
    from compress.build.recipe import parse_recipe
    from compress.gate.options import GateConfig

    parser = build_parser()
    for argv in (["verify", "--model-dir", "m"], ["eval-compare", "--matrix", "m", "--report-file", "r.json"]):
        assert parser.parse_args(argv).trust_remote_code is False
        assert parser.parse_args([*argv, "--trust-remote-code"]).trust_remote_code is True
    recipe = parse_recipe({"base": "x", "variant": [{"steps": []}]})
    assert recipe.trust_remote_code is False
    assert GateConfig(models_dir=tmp_path, name="g", baseline="base", variants=()).trust_remote_code is False
