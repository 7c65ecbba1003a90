"""EXAONE 3.x's config class, so that vLLM (and ``AutoConfig``) read ``model_type: exaone`` without remote code.

vLLM ships the EXAONE 3 model (``ExaoneForCausalLM``, models/exaone.py) but not its config class, and
transformers has none: both would execute the checkpoint's ``configuration_exaone.py``. That file only stores
the config.json keys and aliases ``num_hidden_layers`` to ``num_layers``, which this class does too. Register
it (:func:`register`) in a process before an engine resolves an EXAONE 3 folder; the class lives at module
level so that a vLLM engine in another process can unpickle it. Imports transformers: import it lazily.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig


class ExaoneConfig(PreTrainedConfig):
    """The fields and defaults of EXAONE's ``configuration_exaone.py``; ``num_hidden_layers`` is ``num_layers``.
    ``rope_theta``/``rope_scaling`` become ``rope_parameters`` as transformers 5 does for every config."""

    model_type = "exaone"
    keys_to_ignore_at_inference = ["past_key_values"]  # noqa: RUF012  (transformers' class attributes)
    attribute_map = {"num_hidden_layers": "num_layers"}  # noqa: RUF012

    vocab_size: int = 102400
    max_position_embeddings: int = 2048
    hidden_size: int = 2048
    num_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    intermediate_size: int | None = None
    head_dim: int | None = None
    activation_function: str = "silu"
    rope_parameters: dict | None = None
    embed_dropout: float = 0.0
    attention_dropout: float = 0.0
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.intermediate_size is None:
            self.intermediate_size = self.hidden_size * 4
        super().__post_init__(**kwargs)


def register() -> None:
    """Make ``AutoConfig`` resolve ``model_type: exaone`` to :class:`ExaoneConfig` (idempotent)."""
    AutoConfig.register("exaone", ExaoneConfig, exist_ok=True)
