"""Split a gate speed file (reports/gate/<gate>-speed.json) into disjoint blocks of N interleaved rounds and
give the verdict each block alone would have given: N rounds is one gate run's decision (default 8). Each
block is judged three ways: the median of its per-round ratios (the gate's rule, compress.evaluation.timing),
the ratio of the two sides' best rounds, and the ratio of their medians.

usage: python tools/h200/blocks.py SPEED_JSON THRESHOLDS_TOML GATE [N]
"""

import json
import sys
from pathlib import Path
from statistics import median

from compress.evaluation.timing import paired_speedup, round_ratios
from compress.gate.thresholds import load_thresholds

ESTIMATORS = {
    "median of ratios": lambda b, c: paired_speedup(b, c).paired,
    "best / best": lambda b, c: min(b) / min(c),
    "median / median": lambda b, c: paired_speedup(b, c).of_medians,
}

speed = json.loads(Path(sys.argv[1]).read_text())
thresholds = load_thresholds(Path(sys.argv[2]))
gate, n = sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 8
for variant, data in speed.items():
    floor = thresholds.for_variant(gate, variant).floors.speedup
    b, c = data["baseline"], data["candidate"]
    ratios = round_ratios(b, c)
    starts = range(0, len(b) - n + 1, n)
    print(
        f"{variant}: batch {data['batch']}, {data['mode']}, {len(b)} rounds; all rounds: median ratio "
        f"{median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); base median {median(b):.4f} s "
        f"best {min(b):.4f}; {variant} median {median(c):.4f} best {min(c):.4f}"
    )
    for name, estimate in ESTIMATORS.items():
        verdicts = [estimate(b[i : i + n], c[i : i + n]) for i in starts]
        passed = sum(v >= floor for v in verdicts)
        print(
            f"  {name:>16}: blocks of {n}: {', '.join(f'{v:.3f}' for v in verdicts)} -> passed {passed}/"
            f"{len(verdicts)} at floor {floor:.2f} (range {min(verdicts):.3f}-{max(verdicts):.3f})"
        )
