"""Write a gate's golden files from its report (reports/gate/<gate>.json), for answers made on a lent GPU.

Why: the device copies the working tree afresh for every call, so goldens that `--snapshot-update` writes
there are gone by the next call, while the report comes back through $OUT. The report holds the same runs
the golden cases saw (answers, token counts, finish reasons, engine), so the records are built with the
gate's own golden_record and serialised by its syrupy extension: byte-identical to what --snapshot-update
writes. Review the diff, then commit.

usage: python .ci/h200/goldens_from_report.py REPORT_JSON GOLDEN_GATE_DIR
"""

import json
import sys
from pathlib import Path

from compress.engines.base import BatchResult, Generation
from compress.evaluation.run import ModelRun
from compress.gate.snapshot import GoldenJSONExtension, golden_key, golden_record
from compress.metrics import compare_outputs
from compress.prompts import Prompt

report = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
out = Path(sys.argv[2])
gate = out.name
prompts = [Prompt(**p) for p in report["prompts"]]


def run_of(entry: dict) -> ModelRun:
    gens = [
        Generation(prompt=o["prompt"], text=o["output"], prompt_tokens=o["prompt_tokens"],
                   output_tokens=o["output_tokens"], finish_reason=o["finish_reason"])
        for o in entry["outputs"]
    ]  # fmt: skip
    engine = {k: entry["engine"][k] for k in ("engine", "dtype", "device")}
    return ModelRun(name=entry["name"], model_dir=entry["model_dir"], engine=engine,
                    result=BatchResult(generations=gens, seconds=0.0))  # fmt: skip


baseline = run_of(report["models"][report["baseline"]])
for name, entry in report["models"].items():
    if entry["status"] != "ok":
        print(f"{name}: skipped ({entry['status']})")
        continue
    run = run_of(entry)
    comparison = None if name == report["baseline"] else compare_outputs(baseline.texts, run.texts)
    record = golden_record(gate=gate, run=run, prompts=prompts, baseline=report["baseline"], comparison=comparison)
    path = out / f"{name}.{golden_key(run)}.json"
    path.write_text(GoldenJSONExtension().serialize(record), encoding="utf-8")
    print(f"{name}: wrote {path}")
