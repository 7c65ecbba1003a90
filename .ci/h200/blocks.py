"""Split a gate speed file (reports/gate/<gate>-speed.json) into disjoint blocks of N interleaved rounds and
give the verdict each block alone would have given: N rounds is one gate run's decision (default 8).

usage: python .ci/h200/blocks.py SPEED_JSON THRESHOLDS_TOML GATE [N]
"""

import json
import sys
from pathlib import Path
from statistics import median

from compress.gate.thresholds import load_thresholds

speed = json.loads(Path(sys.argv[1]).read_text())
thresholds = load_thresholds(Path(sys.argv[2]))
gate, n = sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 8
for variant, data in speed.items():
    floor = thresholds.for_variant(gate, variant).floors.speedup
    ratios = [b / c for b, c in zip(data["baseline"], data["candidate"], strict=True)]
    blocks = [ratios[i : i + n] for i in range(0, len(ratios) - n + 1, n)]
    verdicts = [median(b) for b in blocks]
    passed = sum(v >= floor for v in verdicts)
    print(f"{variant}: floor {floor:.2f}; {len(blocks)} blocks of {n} rounds; passed {passed}/{len(blocks)}; "
          f"block speedups {', '.join(f'{v:.3f}' for v in verdicts)}; all rounds median {median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); batch {data['batch']}, {data['mode']}")
