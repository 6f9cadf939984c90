"""The table of bench/pg/run.sh: objects per second summed over the clients,
for each phase and client count, Python ZODB on RelStorage 4.3 beside bbru on
PgStorage, and their ratio (bbru / RelStorage, > 1 = bbru better).

    python report.py RESULTS_DIR --command CMD --server VERSION [--write BENCHMARKS.md]

RESULTS_DIR holds <half>-c<clients>-<i>.json, one per client process (the
JSON of bench/python/zodb_bench.py and of the zodb-bench binary). A client's
rate for a phase is its objects / median phase time; the table sums them
over the clients of a run (all ran at once).
"""
import argparse
import datetime
import glob
import json
import os
import re

from machine_info import cpu_model, mem, run
from report_text import wrap, write_section

BEGIN = '<!-- bench:pg:start -->'
END = '<!-- bench:pg:end -->'
PHASES = ('add', 'update', 'cold', 'warm', 'hot')


def load(results):
    runs = {}
    for path in glob.glob(os.path.join(results, '*-c*-*.json')):
        m = re.match(r'(python|bbru)-c(\d+)-(\d+)\.json$', os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            runs.setdefault((m[1], int(m[2])), []).append(json.load(f))
    return runs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('results')
    parser.add_argument('--command', required=True)
    parser.add_argument('--server', required=True)
    parser.add_argument('--write')
    args = parser.parse_args()
    runs = load(args.results)
    counts = sorted({c for (_, c) in runs})
    any_run = next(iter(runs.values()))[0]
    lines = [
        BEGIN, '',
        '## PostgreSQL: bbru on PgStorage beside Python on RelStorage 4.3', '',
        f'Written by `{args.command}` on '
        f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: '
        f'{cpu_model()}, {run("nproc")} cores, {mem()}, {args.server} on the same '
        'machine (a private cluster with fsync and synchronous commit on). '
        f'The workload of the persistence-layer section ({any_run["objects"]} '
        f'objects per transaction, {any_run["rounds"]} rounds per client): Python '
        'ZODB 6.4 on RelStorage 4.3 (history-preserving, its default caches) and '
        "bbru's crate `zodb` on `PgStorage`. With several clients each is a "
        'process of its own on a database of its own, all running at once; the '
        "rates are objects per second summed over the clients (each client's "
        'objects / its median phase time). Ratio = bbru / RelStorage.',
        '',
        '| phase | clients | RelStorage objects/s | bbru objects/s | ratio |',
        '|---|---:|---:|---:|---:|',
    ]
    for phase in PHASES:
        for c in counts:
            py = sum(r[f'{phase}_per_s'] for r in runs.get(('python', c), []))
            rs = sum(r[f'{phase}_per_s'] for r in runs.get(('bbru', c), []))
            ratio = f'{rs / py:.2f}x' if py else 'n/a'
            lines.append(f'| {phase} | {c} | {py:,.0f} | {rs:,.0f} | {ratio} |')
    lines += ['', '<details><summary>per-client medians (µs per object)</summary>', '',
              '```']
    for (half, c), rs in sorted(runs.items()):
        for r in rs:
            lines.append(f'{half:6} c={c} ' + ' '.join(
                f'{p}={r[f"{p}_us_per_object"]:.1f}' for p in PHASES))
    lines += ['```', '', '</details>', '', END]
    text = '\n'.join(wrap(lines))
    print(text)
    if args.write:
        write_section(args.write, BEGIN, END, text)


if __name__ == '__main__':
    main()
