"""An empty or malformed prompts file is one line with the fix, exit 2 before any model loads, and no
report written; whatever bytes the file holds, loading it never raises anything but CompressError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.cli import main
from compress.core.errors import CompressError
from compress.core.prompts import load_prompts
from compress.local_models.broken import checkpoint_folder

MALFORMED = "is malformed"
BAD_FILES = [
    pytest.param("p.txt", b"", "holds no prompts. Fix: add at least one non-empty prompt", id="empty-text"),
    pytest.param("p.txt", b"\n  \n\t\n", "holds no prompts", id="blank-lines"),
    pytest.param("p.toml", b"# nothing\n", "holds no prompts", id="empty-toml"),
    pytest.param("p.json", b"[]", "holds no prompts", id="empty-json-list"),
    pytest.param("p.txt", b"\xff\xfe\x00bad", f"{MALFORMED} (UnicodeDecodeError", id="not-utf8"),
    pytest.param("p.toml", b"[[prompt]\nid = 1\n", f"{MALFORMED} (TOMLDecodeError", id="toml-syntax"),
    pytest.param("p.toml", b'[prompt]\ntext = "x"\n', "'prompt' is a dict, not an array", id="toml-one-table"),
    pytest.param("p.toml", b'[[prompt]]\nid = "a"\n', "prompt 0 has no 'text'", id="toml-no-text"),
    pytest.param("p.json", b'{"text": "hi"}', "expected a JSON list", id="json-object"),
    pytest.param("p.json", b"[1, 2]", "prompt 0 is a int, not a string or table", id="json-ints"),
    pytest.param("p.json", b'["ok", ""]', "prompt 1 has empty text", id="json-empty-text"),
    pytest.param("p.json", b'[{"id": null, "text": "x"}]', "prompt 0 has id None", id="json-null-id"),
    pytest.param("p.json", b'["a", "b"', f"{MALFORMED} (JSONDecodeError", id="json-syntax"),
    pytest.param(
        "p.json", b'[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]', "repeats ids ['a']", id="dup-ids"
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
def test_a_bad_prompts_file_is_one_line_with_the_fix(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    file = tmp_path / name
    file.write_bytes(content)
    with pytest.raises(CompressError) as err:
        load_prompts(file)
    text = str(err.value)
    assert f"prompts file {file} " in text and message in text, text
    assert "\n" not in text and "Fix: " in text


def test_a_missing_prompts_file_or_a_folder_says_so(tmp_path: Path) -> None:
    for path in (tmp_path / "none.toml", tmp_path):
        with pytest.raises(CompressError, match=f"prompts file {path} does not exist. Fix: pass an existing file"):
            load_prompts(path)


def test_good_files_in_each_format_load(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('[[prompt]]\nid = "a"\ntext = "hi"\nlang = "ko"\n', encoding="utf-8")
    (tmp_path / "p.json").write_text(json.dumps(["hi", {"id": 7, "text": "there"}]), encoding="utf-8")
    (tmp_path / "p.txt").write_text("hi\n\nthere\n", encoding="utf-8")
    assert [(p.id, p.lang) for p in load_prompts(tmp_path / "p.toml")] == [("a", "ko")]
    assert [p.id for p in load_prompts(tmp_path / "p.json")] == ["p00", "7"]
    assert [p.text for p in load_prompts(tmp_path / "p.txt")] == ["hi", "there"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "text", "lang", "x"]), inner),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    suffix=st.sampled_from([".toml", ".json", ".txt"]),
    content=st.one_of(
        st.binary(max_size=60),
        st.text(max_size=60).map(str.encode),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(st.sampled_from(["[[prompt]]", "[prompt]", 'text = "a"', "id = 1", "id = [1]", "text = 3"]))
        .map("\n".join)
        .map(str.encode),
    ),
)
def test_any_file_content_loads_or_is_a_compress_error(suffix: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"prompts{suffix}"
        file.write_bytes(content)
        try:
            prompts = load_prompts(file)
        except CompressError as err:
            assert "\n" not in str(err) and "Fix: " in str(err)
        else:
            assert prompts and all(p.text.strip() and p.id for p in prompts)
            assert len({p.id for p in prompts}) == len(prompts)


@pytest.mark.parametrize(("name", "content", "message"), [BAD_FILES[0], BAD_FILES[4], BAD_FILES[6]])
def test_eval_compare_stops_before_loading_and_writes_nothing(
    tmp_path: Path, name: str, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / name
    prompts.write_bytes(content)
    reports = tmp_path / "reports"
    reports.mkdir()
    model = checkpoint_folder(tmp_path / "model")  # would fail to load: the prompts must stop it first
    code = main(
        ["eval-compare", "--baseline-model", str(model), "--candidate-models", str(model),
         "--prompts-file", str(prompts), "--report-file", str(reports / "run.json")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: prompts file {prompts} "), err
    assert message in err[0]
    assert list(reports.iterdir()) == []
