"""A bad model folder is refused before anything loads it: one line that says what is wrong and how to fix
it, exit 2 from the CLI (a traceback only with --debug), and no engine is ever constructed for it.

The folders are made in milliseconds by compress.local_models.broken (a config, tiny safetensors, stub tokenizer), each
with one defect, so these tests need no model and run in both environments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.cli import main
from compress.core.errors import CompressError
from compress.folders.checks import check_model_folder
from compress.local_models.broken import BROKEN, broken_folder, checkpoint_folder

# defect -> the part of the one-line message that names it (the folder path comes before it)
MESSAGES = {
    "missing": "does not exist. Fix: pass the path of a Hugging Face model folder",
    "no-config": "has no config.json. Fix: point at a complete model folder",
    "config-not-json": "config.json is not valid JSON (Expecting property name enclosed in double quotes: line 1",
    "config-a-list": "config.json holds a JSON list, not an object. Fix: rebuild or restore the folder",
    "unsupported-architecture": "has unsupported architecture 'GPT2LMHeadModel'. Fix: use one of: Exaone4ForCausalLM",
    "no-architectures": "has no architectures list in config.json. Fix: use one of:",
    "no-weights": "has no safetensors weights. Fix: save the model with save_pretrained(safe_serialization=True)",
    "only-pickled-weights": "has no safetensors weights (only pickled .bin/.pt). Fix: save the model with "
    "save_pretrained(safe_serialization=True); pickled weights are never loaded",
    "missing-shard": "lacks weight shards its model.safetensors.index.json lists: "
    "model-00002-of-00002.safetensors. Fix: copy the missing shards",
    "no-tokenizer": "has no tokenizer (tokenizer.json). Fix: copy the base model's tokenizer files",
    "no-chat-template": "has no chat template. Fix: copy chat_template.jinja",
}
CASES = ["missing", *BROKEN]


def make(tmp_path: Path, defect: str) -> Path:
    return tmp_path / "nope" if defect == "missing" else broken_folder(tmp_path / defect, defect)


def test_every_defect_has_a_message() -> None:
    assert set(MESSAGES) == set(CASES)


def test_the_unspoiled_folders_pass(tmp_path: Path) -> None:
    check_model_folder(checkpoint_folder(tmp_path / "good"))
    check_model_folder(checkpoint_folder(tmp_path / "sharded", shards=3))
    check_model_folder(checkpoint_folder(tmp_path / "llama", architecture="LlamaForCausalLM"))


@pytest.mark.parametrize("defect", CASES)
def test_a_bad_folder_is_one_line_with_the_fix(tmp_path: Path, defect: str) -> None:
    folder = make(tmp_path, defect)
    with pytest.raises(CompressError) as err:
        check_model_folder(folder)
    text = str(err.value)
    assert MESSAGES[defect] in text, text
    assert str(folder) in text and "\n" not in text and text.count("Fix:") == 1


def test_exaone3_is_accepted_without_remote_code(tmp_path: Path) -> None:
    """EXAONE 3.x loads as the Llama network it is (HF) and with this project's config class (vLLM)."""
    folder = checkpoint_folder(tmp_path / "exaone3", architecture="ExaoneForCausalLM")
    assert check_model_folder(folder)["num_layers"] == 4


@pytest.mark.parametrize("defect", CASES)
def test_verify_exits_2_with_the_message_and_no_traceback(
    tmp_path: Path, defect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make(tmp_path, defect)
    assert main(["verify", "--model-dir", str(folder)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and MESSAGES[defect] in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


def test_debug_shows_the_traceback_instead(tmp_path: Path) -> None:
    folder = broken_folder(tmp_path / "bin", "only-pickled-weights")
    with pytest.raises(CompressError, match="only pickled"):
        main(["--debug", "verify", "--model-dir", str(folder)])


@pytest.mark.parametrize("engine", ["hf", "vllm", "auto"])
def test_no_engine_is_constructed_for_a_pickled_only_folder(
    tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs before either engine class is touched, so no .bin file is ever handed to torch.load
    or to vLLM, whatever engine was asked for."""
    from compress.engines import hf_engine, select, vllm_engine

    built: list[str] = []
    monkeypatch.setattr(hf_engine, "HfEngine", lambda *a, **k: built.append("hf"))
    monkeypatch.setattr(vllm_engine, "VllmEngine", lambda *a, **k: built.append("vllm"))
    folder = broken_folder(tmp_path / "bin", "only-pickled-weights")
    with pytest.raises(CompressError, match="only pickled"):
        select.open_engine(folder, engine=engine)
    assert built == []
