"""Merge the runs of the persistence-layer benchmark into one table.

    python3 bench/zodb/report.py RESULTS_DIR [--write BENCHMARKS.md] [--notes FILE]

RESULTS_DIR holds what bench/zodb/run.sh wrote: one JSON per process,
named KIND-rM.json (KIND python or bbru, run M; the keys are those of
bench/python/zodb_bench.py's docstring), and meta.json (machine, versions,
command). For each phase the table shows, per side, the median of the
per-round µs/object pooled over every round of every run, the objects/s
that makes, and the ratio Python/bbru of the medians (> 1 = bbru better),
with the range of that ratio over the runs (run M of Python against run M
of bbru, which ran right after it). With --write, replaces the part of
BENCHMARKS.md between the persistence-layer markers (appending the section
if they are missing); the other sections are left alone. --notes: Markdown
put below the table (the analysis, bench/zodb/observations.md).

Standard library only: it runs with any python3.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import report_text  # noqa: E402  (bench/report_text.py)
from report_text import wrap  # noqa: E402

BEGIN = '<!-- bench:zodb:start -->'
END = '<!-- bench:zodb:end -->'
KINDS = ('python', 'bbru')
PHASES = ('add', 'update', 'cold', 'warm', 'hot')
NAME = re.compile(r'^(python|bbru)-r(\d+)\.json$')
WHAT = {
    'add': 'new objects + holder + root, one commit',
    'update': 'change every object, one commit',
    'cold': 'new storage + DB + connection, load all',
    'warm': 'object cache emptied, load all again',
    'hot': 'all in the object cache, new transaction',
}


def load(results_dir):
    """{kind: [run, ...] in run order} and the meta dict."""
    runs = {kind: [] for kind in KINDS}
    for path in glob.glob(os.path.join(results_dir, '*.json')):
        m = NAME.match(os.path.basename(path))
        if m:
            with open(path) as f:
                runs[m.group(1)].append((int(m.group(2)), json.load(f)))
    runs = {kind: [r for _, r in sorted(group, key=lambda x: x[0])]
            for kind, group in runs.items()}
    with open(os.path.join(results_dir, 'meta.json')) as f:
        meta = json.load(f)
    return runs, meta


def pooled(group, phase):
    """Median µs/object over all rounds of all runs of one side."""
    return statistics.median(v for r in group for v in r['samples_us_per_object'][phase])


def check_sizes(runs):
    first = runs['python'][0]
    for group in runs.values():
        for r in group:
            if (r['objects'], r['rounds']) != (first['objects'], first['rounds']):
                sys.exit('report.py: the runs used different sizes')
    if len(runs['python']) != len(runs['bbru']):
        sys.exit('report.py: not as many Python runs as bbru runs')
    return first['objects'], first['rounds'], len(runs['python'])


def fmt_us(v):
    return f'{v:.2f}' if v < 10 else f'{v:.1f}'


def table(runs):
    lines = ['| phase | what is timed | Python ZODB µs/object | bbru µs/object '
             '| Python objects/s | bbru objects/s | ratio Python/bbru | '
             'ratio range over runs |',
             '|---|---|---:|---:|---:|---:|---:|---:|']
    for phase in PHASES:
        py, rs = pooled(runs['python'], phase), pooled(runs['bbru'], phase)
        per_run = [p[f'{phase}_us_per_object'] / b[f'{phase}_us_per_object']
                   for p, b in zip(runs['python'], runs['bbru'])]
        spread = (f'{min(per_run):.2f}–{max(per_run):.2f}×' if len(per_run) > 1
                  else '')
        lines.append(f'| {phase} | {WHAT[phase]} | {fmt_us(py)} | {fmt_us(rs)} '
                     f'| {1e6 / py:,.0f} | {1e6 / rs:,.0f} | {py / rs:.2f}× '
                     f'| {spread} |')
    py, rs = runs['python'][0], runs['bbru'][0]
    lines.append(f'| record bytes: object / holder | | {py["object_record_bytes"]:.0f} '
                 f'/ {py["holder_record_bytes"]} | {rs["object_record_bytes"]:.0f} / '
                 f'{rs["holder_record_bytes"]} | | | | |')
    return '\n'.join(lines)


def section(runs, meta, extra):
    n, rounds, nruns = check_sizes(runs)
    lines = [
        BEGIN,
        '',
        '## Persistence layer (crate `zodb`) on FileStorage',
        '',
        'zodbshootout\'s measures for one client with an embedded storage: '
        'Python ZODB 6.4 (`ZODB.DB`, `Connection`, `persistent.Persistent`) '
        'on its FileStorage against bbru\'s crate `zodb` (`DB`, '
        '`Connection`, `Transaction`, types made persistent with '
        '`persistent!`) on bbru\'s FileStorage, one process after the other '
        'in one invocation.',
        '',
        '```sh',
        'bench/zodb/run.sh            # default sizes (about 10 s here, plus the build)',
        'bench/zodb/run.sh --quick    # smoke run',
        'bench/zodb/run.sh --write    # also rewrites this section',
        '```',
        '',
        '`run.sh` builds `cargo build --release -p bbru-bench`, gets the venv '
        'of `tools/python-env.sh`, and runs `bench/python/zodb_bench.py` and '
        '`target/release/zodb-bench` alternately (Python, bbru, Python, ...), '
        'each process on a new `Data.fs` in the scratch directory; '
        '`bench/zodb/report.py` makes the table. The docstring of '
        '`zodb_bench.py` defines the workload; in short, each round works on '
        f'N = {n} fresh objects, `bbru.bench.PObject` with state '
        '`{\'attr\': 1, \'data\': \'%032d\' % k}` (the same class name and '
        'the same state dict on both sides), held in a list by one '
        '`bbru.bench.Holder` under a new key of the root:',
        '',
        '- **add**: one transaction creates the N objects and the holder, '
        'sets the root key, commits (N + 2 records, one sync).',
        '- **update**: one transaction sets `attr = 2` on the N objects '
        '(reached through root and holder) and commits (N records, one sync).',
        '- **cold**: the storage and DB are closed and a new FileStorage and '
        'DB opened (untimed); then a new connection reads root, holder and '
        'the N objects (touching `attr`) in one transaction: N + 2 loads '
        'and unpicklings. The file is in the OS page cache (never dropped).',
        '- **warm**: the connection\'s object cache is emptied (Python '
        '`cacheMinimize()`, bbru `clear_cache()`), then the same read: N + 2 '
        'loads again. Python\'s FileStorage has no cache of its own, so on '
        'its side this is OS page cache warm; bbru\'s FileStorage keeps the '
        'records it read lately (its record cache, 16 MiB), so on bbru\'s '
        'side each load is a copy from that cache, without a `pread`. It '
        'differs from cold in reusing the connection and storage, and (for '
        'bbru) in that cache.',
        '- **hot**: the same read in a new transaction, every object in the '
        'connection\'s cache: no storage access (zodbshootout\'s "hot" when '
        'its "warm" means a storage cache).',
        '',
        'Every read checks the count and that `attr` sums to 2 N. Both DBs '
        'keep up to 100,000 objects per connection cache (Python\'s default '
        '`cache_size` of 400 would ghostify most objects at every '
        'transaction boundary). Times are `perf_counter` / `Instant` around '
        'exactly the work listed, divided by N; the table shows the median '
        f'over all {nruns} × {rounds} rounds of each side.',
        '',
        '### Results',
        '',
        f'Run {meta["date"]} with `{meta["command"]}` (N = {n} objects, '
        f'{rounds} rounds per process, {nruns} processes of each side).',
        '',
        f'- machine: {meta["cpu"]}, `nproc` = {meta["nproc"]}, {meta["mem"]} '
        f'RAM, kernel {meta["kernel"]}; load average (1/5/15 min) '
        f'{" ".join(meta["loadavg_start"])} before and '
        f'{" ".join(meta["loadavg_end"])} after the runs (other work shares '
        'this machine: single rounds vary by 2× or more, the medians much less)',
        f'- disk: {meta["disk"]}; `fdatasync` of a 100-byte append: '
        f'{meta["fdatasync_ms"]} ms median (one per add and update commit: '
        f'{float(meta["fdatasync_ms"]) * 1000 / n:.2f} µs per object)',
        f'- bbru: crate `zodb` on `zodb_storage::FileStorage`, {meta["rustc"]}, '
        '`cargo build --release`',
        f'- Python: {meta["python"]}, ZODB {meta["zodb"]}, persistent '
        f'{meta["persistent"]}',
        '',
        'Ratio > 1 means bbru is faster (Python µs/object over bbru '
        'µs/object).',
        '',
    ]
    lines = wrap(lines) + [table(runs), '']
    if extra:
        lines += [extra.rstrip('\n'), '']
    lines += [
        '<details><summary>Per-run medians (µs/object)</summary>',
        '',
        '```',
    ]
    for kind in KINDS:
        for i, r in enumerate(runs[kind], 1):
            per = ', '.join(f'{p} {r[f"{p}_us_per_object"]:.3g}' for p in PHASES)
            lines.append(f'{kind:6} run {i}: {per}')
    lines += ['```', '', '</details>', '', END]
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results_dir')
    parser.add_argument('--write', metavar='BENCHMARKS_MD')
    parser.add_argument('--notes', metavar='FILE',
                        help='Markdown inserted below the table (observations)')
    args = parser.parse_args()
    runs, meta = load(args.results_dir)
    if not runs['python'] or not runs['bbru']:
        sys.exit(f'report.py: no runs of both sides in {args.results_dir}')
    check_sizes(runs)

    print('Ratio > 1 means bbru is faster (Python µs/object / bbru µs/object).')
    print(table(runs))

    if args.write:
        extra = ''
        if args.notes:
            with open(args.notes) as f:
                extra = f.read()
        new = section(runs, meta, extra)
        report_text.write_section(args.write, BEGIN, END, new, heading='')
        print(f'report.py: wrote the persistence-layer section into {args.write}',
              file=sys.stderr)


if __name__ == '__main__':
    main()
