"""Which model a distill step learns from, and whether it can teach this student at all.

Logit distillation compares the two models' distributions token by token, so they must share the tokenizer
exactly: the same vocabulary with the same ids, the same special tokens, and logits of the same width.
Within a family that holds (EXAONE-3.5-2.4B / 7.8B / 32B, EXAONE-4.0-1.2B / 32B); across families it does
not, and a KD loss computed anyway would compare unrelated tokens. The teacher may be larger and of another
depth. Default teacher: the matrix's base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.core.errors import CompressError

SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token")
_FIX = (
    "distill from a teacher of the student's family (the same tokenizer: EXAONE-3.5-7.8B or 32B for "
    "3.5-2.4B, EXAONE-4.0-32B for 4.0-1.2B), or leave teacher unset to distill from the base"
)


def tokenizer_differences(student: Any, teacher: Any) -> list[str]:
    """What keeps two tokenizers from being the same token for token (empty: they are)."""
    problems = []
    s_vocab, t_vocab = student.get_vocab(), teacher.get_vocab()
    if s_vocab != t_vocab:
        moved = sorted(tok for tok in set(s_vocab) & set(t_vocab) if s_vocab[tok] != t_vocab[tok])
        only_t = sorted(set(t_vocab) - set(s_vocab))
        only_s = sorted(set(s_vocab) - set(t_vocab))
        part = f"vocabularies differ ({len(s_vocab)} tokens in the student, {len(t_vocab)} in the teacher"
        if moved:
            tok = moved[0]
            part += (
                f"; {len(moved)} shared tokens have other ids, e.g. {tok!r} is {s_vocab[tok]} in the student, "
                f"{t_vocab[tok]} in the teacher"
            )
        if only_t:
            part += f"; {len(only_t)} only in the teacher, e.g. {only_t[0]!r}"
        if only_s:
            part += f"; {len(only_s)} only in the student, e.g. {only_s[0]!r}"
        problems.append(part + ")")
    for name in SPECIAL:
        s_tok, t_tok = getattr(student, name, None), getattr(teacher, name, None)
        s_id, t_id = getattr(student, f"{name}_id", None), getattr(teacher, f"{name}_id", None)
        if (s_tok, s_id) != (t_tok, t_id):
            problems.append(f"{name} is {s_tok!r} (id {s_id}) in the student, {t_tok!r} (id {t_id}) in the teacher")
    s_special, t_special = set(student.all_special_tokens), set(teacher.all_special_tokens)
    if s_special != t_special:
        problems.append(
            f"special tokens differ (student only: {sorted(s_special - t_special)}, "
            f"teacher only: {sorted(t_special - s_special)})"
        )
    return problems


def check_teacher(student_dir: Path, teacher_dir: Path, student_tok: Any, teacher_tok: Any) -> None:
    """Refuse a teacher whose tokenizer or logits differ from the student's, with every reason at once."""
    from compress.folders.checks import read_config

    problems = tokenizer_differences(student_tok, teacher_tok)
    s_width = read_config(student_dir).get("vocab_size")
    t_width = read_config(teacher_dir).get("vocab_size")
    if s_width != t_width:
        problems.append(f"the logits are {s_width} wide in the student, {t_width} in the teacher (vocab_size)")
    if problems:
        raise CompressError(f"distill teacher {teacher_dir} cannot teach {student_dir}: " + "; ".join(problems), _FIX)


def describe(teacher_dir: Path, *, named: str | None, base_dir: Path) -> dict[str, Any]:
    """The manifest's record of the teacher: what it was called, where it was, its fingerprint and size."""
    from compress.folders.checks import read_config
    from compress.folders.manifest import folder_digest, weights_digest

    config = read_config(teacher_dir)
    return {
        "name": named or "base",
        "path": str(teacher_dir),
        "digest": folder_digest(teacher_dir),
        "weights_sha256": weights_digest(teacher_dir),
        "is_base": named is None or teacher_dir.resolve() == base_dir.resolve(),
        "architecture": (config.get("architectures") or ["?"])[0],
        "layers": config.get("num_hidden_layers", config.get("num_layers")),
        "hidden_size": config.get("hidden_size"),
    }
