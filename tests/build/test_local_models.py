"""The two local base models (SmolLM2 from its PyPI GGUF, the tiny EXAONE-4) and the folder writer they use.

The models are made once per session by the ``smollm2_dir``/``tiny_exaone4_dir`` fixtures (cached under
``$EXAONE_COMPRESSION_HOME``); each model is loaded once in HF float32 and answers every fixed prompt in one
chat batch and one plain-prompt batch, which the tests below share.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from jinja2 import TemplateError

from compress.cli import main
from compress.core.errors import CompressError
from compress.core.prompts import Prompt, load_prompts
from compress.engines import BatchResult, SamplingConfig, open_engine
from compress.folders.atomic import (
    MANIFEST,
    atomic_folder,
    folder_hashes,
    is_complete,
    read_manifest,
    weights_sha256,
)
from compress.folders.checks import check_model_folder
from compress.local_models import tiny_exaone4

SMOLLM2_HELLO = "Hello! How can I assist you today?"  # measured in HF and vLLM (shared/ENVIRONMENT.md)


@dataclass(frozen=True)
class Answers:
    """One model's HF float32 greedy answers to the gate's prompts: with and without the chat template."""

    folder: Path
    prompts: list[Prompt]
    chat: BatchResult
    plain: BatchResult

    def chat_text(self, prompt_id: str) -> str:
        return self.chat.texts[[p.id for p in self.prompts].index(prompt_id)]


def _answers(folder: Path) -> Answers:
    prompts = load_prompts()
    with open_engine(folder, engine="hf", dtype="float32") as engine:
        chat = engine.chat([p.text for p in prompts], SamplingConfig())
        plain = engine.complete([p.text for p in prompts], SamplingConfig())
    return Answers(folder, prompts, chat, plain)


@pytest.fixture(scope="module")
def smollm2_answers(smollm2_dir: Path) -> Answers:
    return _answers(smollm2_dir)


@pytest.fixture(scope="module")
def tiny_answers(tiny_exaone4_dir: Path) -> Answers:
    return _answers(tiny_exaone4_dir)


@pytest.fixture(params=["smollm2", "tiny-exaone4"])
def answers(request: pytest.FixtureRequest) -> Answers:
    return request.getfixturevalue(
        {"smollm2": "smollm2_answers", "tiny-exaone4": "tiny_answers"}[request.param]
    )


@pytest.fixture(params=["smollm2", "tiny-exaone4"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(
        {"smollm2": "smollm2_dir", "tiny-exaone4": "tiny_exaone4_dir"}[request.param]
    )


def _config(folder: Path, name: str = "config.json") -> dict:
    return json.loads((folder / name).read_text(encoding="utf-8"))


# --- both folders ------------------------------------------------------------------------------------


def test_folder_is_complete_and_matches_its_manifest(model_dir: Path) -> None:
    config = check_model_folder(model_dir)  # config, safetensors, tokenizer, chat template, known arch
    assert config["num_hidden_layers"] == 30
    assert (model_dir / "chat_template.jinja").is_file()
    assert (model_dir / "generation_config.json").is_file()
    manifest = read_manifest(model_dir)
    assert manifest is not None, f"{model_dir} has no complete manifest"
    hashes = folder_hashes(model_dir)
    assert manifest["files"] == hashes, "a file changed after the folder was made"
    assert manifest["weights_sha256"] == weights_sha256(hashes)
    assert manifest["check"]["answer"].strip(), "the make's own check answer is empty"


def test_eos_is_the_end_of_turn_token(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    end_of_turn = "<|im_end|>" if _config(model_dir)["model_type"] == "llama" else "[|endofturn|]"
    eos_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    assert tokenizer.eos_token == end_of_turn
    assert _config(model_dir)["eos_token_id"] == eos_id
    assert _config(model_dir, "generation_config.json")["eos_token_id"] == eos_id
    assert _config(model_dir, "generation_config.json")["pad_token_id"] == tokenizer.pad_token_id


def test_making_again_returns_the_cached_folder(model_dir: Path) -> None:
    from compress.local_models.smollm2 import make_smollm2

    maker = make_smollm2 if _config(model_dir)["model_type"] == "llama" else tiny_exaone4.make_tiny_exaone4
    before = (model_dir / MANIFEST).stat().st_mtime_ns
    started = time.perf_counter()
    assert maker() == model_dir
    assert time.perf_counter() - started < 5, "a complete folder must be reused, not remade"
    assert (model_dir / MANIFEST).stat().st_mtime_ns == before


def test_chat_answers_are_non_empty(answers: Answers) -> None:
    empty = [p.id for p, text in zip(answers.prompts, answers.chat.texts, strict=True) if not text.strip()]
    assert not empty, f"{answers.folder.name}: empty chat answers for {empty}"


def test_plain_prompt_generation_differs_from_chat(answers: Answers) -> None:
    """The old scripts' failure: generate() on the raw prompt, no chat template, gives other text."""
    same = [
        p.id
        for p, chat, plain in zip(answers.prompts, answers.chat.texts, answers.plain.texts, strict=True)
        if chat.strip() == plain.strip()
    ]
    assert not same, f"{answers.folder.name}: chat and plain prompts gave the same text for {same}"


# --- SmolLM2 -----------------------------------------------------------------------------------------


def test_smollm2_is_a_plain_tied_llama(smollm2_dir: Path) -> None:
    config = _config(smollm2_dir)
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is True
    assert "quantization_config" not in config, "the GGUF's quantization must not leak into the folder"
    assert config["hidden_size"] == 576 and config["head_dim"] == 64


def test_smollm2_chat_template_is_chatml(smollm2_dir: Path) -> None:
    from transformers import AutoTokenizer

    rendered = AutoTokenizer.from_pretrained(smollm2_dir).apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_smollm2_answers_hello_as_measured(smollm2_answers: Answers) -> None:
    assert smollm2_answers.chat_text("hello") == SMOLLM2_HELLO


# --- tiny EXAONE-4 -----------------------------------------------------------------------------------


def test_tiny_exaone4_config_is_exaone4(tiny_exaone4_dir: Path) -> None:
    config = _config(tiny_exaone4_dir)
    assert config["architectures"] == ["Exaone4ForCausalLM"]
    assert config["model_type"] == "exaone4"
    assert config["num_hidden_layers"] == 30
    assert config["head_dim"] == 64, "vLLM's CPU attention rejects head_dim below 64"
    assert config["hidden_size"] == config["num_attention_heads"] * config["head_dim"]
    assert config["tie_word_embeddings"] is True
    assert len(config["layer_types"]) == 30
    # EXAONE-4.0-32B's hybrid layout: every fourth layer global, the others sliding-window.
    assert config["layer_types"] == [
        "full_attention" if (i + 1) % 4 == 0 else "sliding_attention" for i in range(30)
    ]
    assert isinstance(config["sliding_window"], int)


def test_tiny_exaone4_chat_template_renders_exaone_format(tiny_exaone4_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_exaone4_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == "[|system|]\nBe brief.[|endofturn|]\n[|user|]\nhi[|endofturn|]\n[|assistant|]\n"
    for token in tiny_exaone4.SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(token)], f"{token} must be one special token"
    with pytest.raises(TemplateError, match="system, user and assistant"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_tiny_exaone4_training_text_holds_no_gate_prompt() -> None:
    chats, texts = tiny_exaone4.corpus()
    everything = "\n".join([*(u + "\n" + a for u, a in chats), *texts]).casefold()
    assert [p.id for p in load_prompts() if p.text.casefold() in everything] == []


def test_tiny_exaone4_corpus_refuses_a_gate_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    chats, _ = tiny_exaone4.corpus()
    leaked = Prompt(id="leaked", text=chats[0][0])
    monkeypatch.setattr(tiny_exaone4, "load_prompts", lambda: [*load_prompts(), leaked])
    with pytest.raises(CompressError, match=r"contains gate prompts \['leaked'\]"):
        tiny_exaone4.corpus()


def test_tiny_exaone4_build_is_deterministic() -> None:
    """Same recipe, same weights: two short builds in one process give identical tensors and tokenizer."""
    recipe = tiny_exaone4.Recipe(steps=2)
    first_tok, first, _ = tiny_exaone4.build_model(recipe)
    second_tok, second, _ = tiny_exaone4.build_model(recipe)
    assert first_tok.backend_tokenizer.to_str() == second_tok.backend_tokenizer.to_str()
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a), "seeded training gave different weights"


# --- the folder writer -------------------------------------------------------------------------------


def test_atomic_folder_publishes_only_finished_folders(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_folder(dest) as tmp:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [], "the temp folder must be removed on failure"

    info: dict = {"source": "test"}
    with atomic_folder(dest, info=info) as tmp:
        assert tmp.parent == dest.parent and tmp.name == f"model.tmp-{os.getpid()}"
        (tmp / "model.safetensors").write_bytes(b"weights")
        info["late"] = "added inside the block"
    manifest = read_manifest(dest)
    assert manifest is not None
    assert manifest["source"] == "test" and manifest["late"] == "added inside the block"
    assert set(manifest["files"]) == {"model.safetensors"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_folder_without_manifest_is_incomplete_and_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "config.json").write_text("{}")
    assert not is_complete(dest)
    (dest / MANIFEST).write_text('{"complete": false}')
    assert not is_complete(dest)
    with atomic_folder(dest) as tmp:
        (tmp / "config.json").write_text('{"new": true}')
    assert is_complete(dest)
    assert json.loads((dest / "config.json").read_text()) == {"new": True}


def test_temp_folders_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    dead = tmp_path / "model.tmp-999999999"  # above Linux's pid_max: no such process
    dead.mkdir()
    alive = tmp_path / f"model.tmp-{os.getppid()}"  # a live process: maybe still writing
    alive.mkdir()
    with atomic_folder(dest) as tmp:
        (tmp / "x").write_text("x")
    assert not dead.exists()
    assert alive.exists()


# --- the command -------------------------------------------------------------------------------------


def test_make_models_command_reports_every_folder(
    smollm2_dir: Path,
    tiny_exaone4_dir: Path,
    tiny_exaone4_teacher_dir: Path,
    tiny_exaone3_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["make-models"]) == 0
    out = capsys.readouterr().out
    assert f"[smollm2] up to date: {smollm2_dir}" in out
    assert f"[tiny-exaone4] up to date: {tiny_exaone4_dir}" in out
    assert f"[tiny-exaone4-teacher] up to date: {tiny_exaone4_teacher_dir}" in out
    assert f"[tiny-exaone3] up to date: {tiny_exaone3_dir}" in out
    assert "Exaone4ForCausalLM, 30 layers" in out and "Exaone4ForCausalLM, 12 layers" in out
    assert "ExaoneForCausalLM, 30 layers" in out


def test_the_teacher_is_larger_with_the_students_tokenizer(
    tiny_exaone4_dir: Path, tiny_exaone4_teacher_dir: Path
) -> None:
    """The larger tiny EXAONE-4 that base-distilled learns from: wider, shallower, more parameters, trained
    longer to a lower loss on the same text, and the very same tokenizer file."""
    student, teacher = _config(tiny_exaone4_dir), _config(tiny_exaone4_teacher_dir)
    assert (teacher["hidden_size"], teacher["num_hidden_layers"]) == (256, 12)
    assert (student["hidden_size"], student["num_hidden_layers"]) == (128, 30)
    tokenizer = "tokenizer.json"
    assert (tiny_exaone4_teacher_dir / tokenizer).read_bytes() == (tiny_exaone4_dir / tokenizer).read_bytes()
    s_train, t_train = read_manifest(tiny_exaone4_dir)["train"], read_manifest(tiny_exaone4_teacher_dir)["train"]
    assert t_train["steps"] > s_train["steps"] and t_train["final_loss"] < s_train["final_loss"]
    print(f"\nteacher: {t_train}\nstudent: {s_train}")


def test_make_models_rejects_an_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["make-models", "--only", "llama"])
    assert "invalid choice" in capsys.readouterr().err
