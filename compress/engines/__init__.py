"""One generation interface, two engines: vLLM (`LLM.chat`) and HF transformers (the reference).

Use ``open_engine(model_dir)`` as a context manager: the model loads once (timed apart from generation),
``chat()`` runs every prompt in one batched call, and leaving the block frees the model so the next one
can load in the same process.
"""

from compress.engines.base import BatchResult, Engine, Generation, SamplingConfig
from compress.engines.select import choose_engine, open_engine

__all__ = ["BatchResult", "Engine", "Generation", "SamplingConfig", "choose_engine", "open_engine"]
