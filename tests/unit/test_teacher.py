"""A distill teacher must share the student's tokenizer token for token; every difference is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.builders.teacher import check_teacher, tokenizer_differences
from compress.core.errors import CompressError

SPECIAL = ["[PAD]", "[BOS]", "[|endofturn|]", "[UNK]"]


def _tokenizer(texts: list[str], special: list[str] = SPECIAL, vocab: int = 300):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token=special[0], bos_token=special[1], eos_token=special[2], unk_token=special[3]
    )


TEXT = ["the capital of korea is seoul", "kimchi is fermented cabbage", "how do plants make food"] * 20


def _folder(path: Path, vocab_size: int) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"vocab_size": vocab_size}))
    return path


def test_the_same_tokenizer_passes(tmp_path: Path) -> None:
    student, teacher = _tokenizer(TEXT), _tokenizer(TEXT)
    assert tokenizer_differences(student, teacher) == []
    check_teacher(_folder(tmp_path / "s", 300), _folder(tmp_path / "t", 300), student, teacher)


def test_another_vocabulary_is_refused_with_an_example(tmp_path: Path) -> None:
    student = _tokenizer(TEXT)
    teacher = _tokenizer(["entirely different words arrive here"] * 20)
    with pytest.raises(CompressError) as err:
        check_teacher(_folder(tmp_path / "s", 300), _folder(tmp_path / "t", 300), student, teacher)
    text = str(err.value)
    assert "cannot teach" in text and "vocabularies differ" in text and "only in the student, e.g." in text
    assert "Fix: distill from a teacher of the student's family" in text


def test_moved_special_tokens_and_logit_width_are_named(tmp_path: Path) -> None:
    student = _tokenizer(TEXT)
    teacher = _tokenizer(TEXT, special=["[PAD]", "[BOS]", "[EOS]", "[UNK]"])
    problems = tokenizer_differences(student, teacher)
    assert any(p.startswith("eos_token is '[|endofturn|]' (id 2) in the student, '[EOS]' (id 2)") for p in problems)
    assert any(p.startswith("special tokens differ") for p in problems)
    with pytest.raises(CompressError, match="the logits are 300 wide in the student, 512 in the teacher"):
        check_teacher(_folder(tmp_path / "s", 300), _folder(tmp_path / "t", 512), student, _tokenizer(TEXT))
