"""Pruning as properties, for every layout it supports (EXAONE 4 and llama under ``model.layers``, EXAONE 3.x
under ``transformer.h`` with ``num_layers``): any valid set of dropped layers gives a checkpoint whose layer
count, per-layer lists (``layer_types``, ``no_rope_layers``) and tensor indices agree, kept layers renumbered
0..k-1 in their original order. test_prune.py holds the EXAONE-4 config-only property and the real models.

The checkpoints are compress.local_models.broken stubs: one 2x2 tensor per layer whose value is its original index, so a
renumbering can be read back from the output; sharded or not. Milliseconds per example.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from compress.builders.prune import LAYOUTS, PER_LAYER_KEYS, prune_checkpoint, prune_config, rename_key
from compress.core.errors import CompressError
from compress.folders.checks import check_model_folder
from compress.local_models.broken import FAMILIES, checkpoint_folder

LAYER_TYPES = ["sliding_attention", "full_attention"]


def test_every_prune_layout_has_a_stub_family() -> None:
    assert set(LAYOUTS) == set(FAMILIES)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, int, list[int], list[str] | None, int]:
    arch = draw(st.sampled_from(sorted(LAYOUTS)))
    n = draw(st.integers(1, 12))
    drop = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n - 1))
    layer_types = draw(st.none() | st.lists(st.sampled_from(LAYER_TYPES), min_size=n, max_size=n))
    shards = draw(st.integers(1, 3))
    return arch, n, drop, layer_types, shards


def _weights(folder: Path) -> dict:
    tensors: dict = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_any_valid_drop_gives_a_consistent_checkpoint(case: tuple) -> None:
    arch, n, drop, layer_types, shards = case
    count_key, layer_key, embed_key = FAMILIES[arch]
    kept = [i for i in range(n) if i not in drop]
    with tempfile.TemporaryDirectory() as tmp:
        src = checkpoint_folder(Path(tmp) / "src", architecture=arch, layers=n, layer_types=layer_types, shards=shards)
        out = Path(tmp) / "out"
        out.mkdir()
        summary = prune_checkpoint(src, out, drop)

        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        assert config[count_key] == len(kept) == summary["layers_after"]
        assert summary["kept"] == kept and summary["dropped"] == sorted(drop)
        if layer_types is not None:
            assert config["layer_types"] == [layer_types[i] for i in kept]
        tensors = _weights(out)
        # New layer i is old layer kept[i], and nothing else of the layers is left.
        assert {k for k in tensors if k != embed_key} == {layer_key.format(i) for i in range(len(kept))}
        assert [int(tensors[layer_key.format(i)][0, 0]) for i in range(len(kept))] == kept
        assert embed_key in tensors
        index = out / "model.safetensors.index.json"
        if shards > 1:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            assert set(weight_map) == set(tensors)
            assert all((out / shard).is_file() for shard in weight_map.values())
        else:
            assert not index.exists()
        check_model_folder(out, trust_remote_code=arch == "ExaoneForCausalLM")


@settings(max_examples=100, deadline=None)
@given(
    arch=st.sampled_from(sorted(LAYOUTS)),
    n=st.integers(1, 64),
    data=st.data(),
)
def test_config_rewrite_and_renaming_agree_for_every_layout(arch: str, n: int, data: st.DataObject) -> None:
    """Pure: prune_config's count and per-layer lists, and rename_key's new indices, describe the same layers."""
    count_key, layer_key, embed_key = FAMILIES[arch]
    config: dict = {"architectures": [arch], count_key: n}
    for key in PER_LAYER_KEYS:
        if data.draw(st.booleans(), label=f"has {key}"):
            config[key] = data.draw(st.lists(st.integers(0, 1) | st.sampled_from(LAYER_TYPES), min_size=n, max_size=n))
    drop = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n - 1), label="drop")
    new, mapping = prune_config(config, drop)
    kept = [i for i in range(n) if i not in drop]
    assert new[count_key] == len(kept) and sorted(mapping) == kept
    for key in PER_LAYER_KEYS:
        if key in config:
            assert new[key] == [config[key][i] for i in kept] and len(new[key]) == new[count_key]
    layout = LAYOUTS[arch]
    renamed = [rename_key(layer_key.format(i), layout, mapping) for i in range(n)]
    assert [r for r in renamed if r is not None] == [layer_key.format(j) for j in range(len(kept))]
    assert [i for i, r in enumerate(renamed) if r is None] == sorted(drop)
    assert rename_key(embed_key, layout, mapping) == embed_key


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_a_per_layer_list_of_the_wrong_length_is_refused(arch: str) -> None:
    count_key = FAMILIES[arch][0]
    with pytest.raises(CompressError, match=r"no_rope_layers has 2 entries for 3 layers.*Fix: fix the base"):
        prune_config({"architectures": [arch], count_key: 3, "no_rope_layers": [1, 0]}, [0])
