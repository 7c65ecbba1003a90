"""`python -m compress report merge A.json B.json ... --out MERGED.json`: one report from several runners' gates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="work with finished reports (merge)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    merge = actions.add_parser(
        "merge",
        help="merge the gate reports of one release gated on several runners into one",
        description=(
            "Merge gate (or eval-compare) reports that each hold the same baseline and a subset of the variants "
            "(pytest ... --gate-variants A,B on each runner) into one report with its markdown table and plots. "
            "Refused when the baselines, engines, dtypes, versions, prompts or gate settings differ, or when a "
            "variant is in two reports with different results. <stem>-runs.json and <stem>-speed.json beside "
            "the inputs are merged too."
        ),
    )
    merge.add_argument("reports", nargs="+", type=Path, help="the reports/gate/<gate>.json of each runner")
    merge.add_argument("--out", type=Path, required=True, help="the merged report (its .md and .png go beside it)")
    merge.set_defaults(run=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from compress.core.atomicio import atomic_file, check_writable_file
    from compress.reports import write_compare_reports
    from compress.reports.merge import COMPANIONS, companion_file, merge_companions, merge_reports, read_report

    out = check_writable_file(args.out)
    merged = merge_reports([(str(path), read_report(path)) for path in args.reports])
    written = write_compare_reports(merged, out)
    for kind in COMPANIONS:
        data = merge_companions(list(args.reports), merged.baseline, kind)
        if data is not None:
            with atomic_file(companion_file(out, kind)) as handle:
                handle.write(json.dumps(data, indent=1) + "\n")
            written[kind] = companion_file(out, kind)
    candidates = [name for name in merged.models if name != merged.baseline]
    print(f"merged {len(args.reports)} reports: baseline {merged.baseline}, {len(candidates)} candidates")
    for source in merged.merged_from:
        print(f"  {source.file} ({source.host.hostname}): {', '.join(source.variants) or '-'}")
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0
