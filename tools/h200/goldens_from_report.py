"""Write a gate's golden files from its runs file (reports/gate/<gate>-runs.json), for answers made on a lent GPU.

Why: the device copies the working tree afresh for every call, so goldens that `--snapshot-update` writes
there are gone by the next call, while the reports come back through $OUT. The runs file holds the very runs
the golden cases saw (compress.evaluation.run.run_to_dict), so the records are built with the gate's own
golden_record and serialised by its syrupy extension: byte-identical to what --snapshot-update writes.
Review the diff, then commit.

usage: python tools/h200/goldens_from_report.py RUNS_JSON PROMPTS_FROM_REPORT_JSON GOLDEN_GATE_DIR
"""

import json
import sys
from pathlib import Path

from compress.core.prompts import Prompt
from compress.core.similarity import compare_outputs
from compress.evaluation.run import run_from_dict
from compress.gate.snapshot import GoldenJSONExtension, golden_key, golden_record

runs = {name: run_from_dict(data) for name, data in json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")).items()}
report = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
out = Path(sys.argv[3])
gate = out.name
prompts = [Prompt(**p) for p in report["prompts"]]
baseline = runs[report["baseline"]]
for name, run in runs.items():
    if not run.ok:
        print(f"{name}: skipped ({run.status})")
        continue
    comparison = None if name == report["baseline"] else compare_outputs(baseline.texts, run.texts)
    record = golden_record(gate=gate, run=run, prompts=prompts, baseline=report["baseline"], comparison=comparison)
    path = out / f"{name}.{golden_key(run)}.json"
    path.write_text(GoldenJSONExtension().serialize(record), encoding="utf-8")
    print(f"{name}: wrote {path}")
