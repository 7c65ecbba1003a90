"""The gate's model work as a bare vLLM script: the yardstick for the harness's overhead.

``python -m compress.bench.bare_gate SPEC.json OUT.json``. SPEC (written by
:mod:`compress.bench.overhead` from compress/gate/session.py's rules) lists, per variant, the ``LLM(...)``
keyword arguments the gate's engine would pass, the prompts, the sampling and the counts. Two modes, as the gate:

* ``plain`` (no speed case selected, e.g. on a CPU): per variant, create the ``LLM``, chat the whole prompt
  batch ``warmup + repeats`` times, shut it down;
* ``speed`` (``-m gpu`` on CUDA): the baseline stays loaded as the timing reference and answers once; each
  candidate is loaded, answers once, then ``warmup + repeats`` rounds of the fixed-length speed workload run
  on the reference at the candidate's dtype (loaded once more when it differs, as the gate does) and the
  candidate in turns (order rotating), and the candidate is shut down; the references last.

Nothing else: no pytest, no checks, goldens or reports, only vLLM and the standard library, so ``gate wall
time / this script's wall time`` is what the harness adds. OUT gets the script's own breakdown.
"""

from __future__ import annotations

import gc
import json
import sys
import time


def _shutdown(llm) -> None:
    """What the gate's engine does on close: stop the engine core, collect, clean up vLLM's globals."""
    engine_core = getattr(llm.llm_engine, "engine_core", None)
    if engine_core is not None:
        engine_core.shutdown()
    del engine_core
    gc.collect()
    try:
        from vllm.distributed import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    except ImportError:
        pass


def main(spec_file: str, out_file: str) -> int:
    started = time.perf_counter()
    from vllm import LLM, SamplingParams

    with open(spec_file, encoding="utf-8") as handle:
        spec = json.load(handle)
    record: dict = {"import_seconds": time.perf_counter() - started, "mode": spec["mode"], "variants": []}
    answers = SamplingParams(**spec["sampling"])
    chats = [[{"role": "user", "content": p}] for p in spec["prompts"]]

    def load(variant: dict):
        t0 = time.perf_counter()
        llm = LLM(**variant["llm_kwargs"])
        return llm, {"name": variant["name"], "load_seconds": time.perf_counter() - t0}

    def chat(llm, conversations, params) -> int:
        outputs = llm.chat(conversations, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outputs)

    if spec["mode"] == "plain":
        for variant in spec["variants"]:
            llm, entry = load(variant)
            t1 = time.perf_counter()
            for _ in range(spec["warmup"] + spec["repeats"]):
                entry["output_tokens_last_batch"] = chat(llm, chats, answers)
            t2 = time.perf_counter()
            _shutdown(llm)
            del llm
            entry.update(generate_seconds=t2 - t1, shutdown_seconds=time.perf_counter() - t2)
            record["variants"].append(entry)
    else:
        speed_params = SamplingParams(**spec["speed"]["sampling"])
        speed_chats = [[{"role": "user", "content": p}] for p in spec["speed"]["prompts"]]
        baseline = spec["variants"][0]
        reference, entry = load(baseline)
        references = {baseline["llm_kwargs"]["dtype"]: reference}
        t1 = time.perf_counter()
        entry["output_tokens_last_batch"] = chat(reference, chats, answers)
        entry["generate_seconds"] = time.perf_counter() - t1
        record["variants"].append(entry)
        for variant in spec["variants"][1:]:
            dtype = variant["llm_kwargs"]["dtype"]
            if dtype not in references:  # the gate times each variant against the baseline at its dtype
                again = {**baseline, "llm_kwargs": {**baseline["llm_kwargs"], "dtype": dtype}}
                references[dtype], extra = load(again)
                record["variants"].append({**extra, "role": f"timing reference in {dtype}"})
            llm, entry = load(variant)
            t1 = time.perf_counter()
            entry["output_tokens_last_batch"] = chat(llm, chats, answers)
            pair = [references[dtype], llm]
            for r in range(-spec["warmup"], spec["repeats"]):  # compress.evaluation.timing.interleave(rotate=True)
                shift = r % 2
                for engine in pair[shift:] + pair[:shift]:
                    chat(engine, speed_chats, speed_params)
            t2 = time.perf_counter()
            _shutdown(llm)
            del llm
            entry.update(generate_seconds=t2 - t1, shutdown_seconds=time.perf_counter() - t2)
            record["variants"].append(entry)
        for engine in references.values():
            _shutdown(engine)
        del reference, references
    record["total_seconds"] = time.perf_counter() - started
    with open(out_file, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m compress.bench.bare_gate SPEC.json OUT.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
