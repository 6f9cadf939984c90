"""Merge the runs of the ZEO server benchmark into one table.

    python3 bench/zeo/report.py RESULTS_DIR [--write BENCHMARKS.md]

RESULTS_DIR holds what bench/zeo/run.sh wrote: one workload.py JSON per run,
named KIND-cC-rR.json (KIND python or bbru, C clients, round R), and
meta.json (machine, versions, command). For each phase and concurrency the
table shows the median over the rounds of each server's rate (objects/s)
and the ratio bbru/Python (> 1 = bbru better), plus each server's CPU time
per object during the phase (median over the rounds) and their ratio
Python/bbru (> 1 = bbru cheaper). With --write,
replaces the part of BENCHMARKS.md between the ZEO markers (appending the
section if the markers are missing); the FileStorage part is left alone.

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

BEGIN = '<!-- bench:zeo:start -->'
END = '<!-- bench:zeo:end -->'
KINDS = ('python', 'bbru')
PHASES = ('add', 'update', 'cold', 'warm', 'hot')
NAME = re.compile(r'^(python|bbru)-c(\d+)-r(\d+)\.json$')


def load(results_dir):
    """{(kind, clients): [run, ...]} and the meta dict."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(results_dir, '*.json'))):
        m = NAME.match(os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            runs.setdefault((m.group(1), int(m.group(2))), []).append(json.load(f))
    with open(os.path.join(results_dir, 'meta.json')) as f:
        meta = json.load(f)
    return runs, meta


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_rate(v):
    return 'n/a' if v is None else f'{v:,.0f}'


def fmt_us(v):
    if v is None:
        return 'n/a'
    return f'{v:.1f}' if v < 100 else f'{v:.0f}'


def summary(runs):
    """[(phase, clients, {kind: (rate, server_us, client_us)})], table order."""
    clients = sorted({c for _, c in runs})
    rows = []
    for phase in PHASES:
        for c in clients:
            cells = {}
            for kind in KINDS:
                got = [r['phases'][phase] for r in runs.get((kind, c), [])
                       if phase in r['phases']]
                cells[kind] = (median([p['per_s'] for p in got]),
                               median([p['server_cpu_us_per_object'] for p in got]),
                               median([p.get('client_cpu_us_per_object') for p in got]))
            rows.append((phase, c, cells))
    return rows


def table(runs):
    lines = ['| phase | clients | Python ZEO (objects/s) | bbru-zeo (objects/s) '
             '| ratio bbru/Python | server CPU µs/object, Python | '
             'server CPU µs/object, bbru | server CPU ratio Python/bbru '
             '| client CPU µs/object (Python run / bbru run) |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for phase, c, cells in summary(runs):
        (py, py_cpu, py_cl), (rs, rs_cpu, rs_cl) = cells['python'], cells['bbru']
        r = 'n/a' if not py or rs is None else f'{rs / py:.2f}×'
        # Idle phases (warm, hot) round to 0 µs: no ratio there.
        cpu_r = ('n/a' if not py_cpu or not rs_cpu or rs_cpu < 0.05
                 else f'{py_cpu / rs_cpu:.2f}×')
        lines.append(f'| {phase} | {c} | {fmt_rate(py)} | {fmt_rate(rs)} | {r} '
                     f'| {fmt_us(py_cpu)} | {fmt_us(rs_cpu)} | {cpu_r} '
                     f'| {fmt_us(py_cl)} / {fmt_us(rs_cl)} |')
    return '\n'.join(lines)


def sizes(runs):
    first = next(iter(runs.values()))[0]
    keys = ('objects', 'per_txn', 'repeat', 'record_bytes')
    for group in runs.values():
        for r in group:
            if any(r[k] != first[k] for k in keys):
                sys.exit('report.py: the runs used different sizes')
    rounds = sorted({len(g) for g in runs.values()})
    return first, rounds


def section(runs, meta, results_dir, extra):
    first, rounds = sizes(runs)
    lines = [
        BEGIN,
        '',
        '## ZEO server',
        '',
        'The same Python ZEO client workload against Python\'s ZEO server '
        '(`python -m ZEO.runzeo -a HOST:PORT -f Data.fs`) and against '
        '`bbru-zeo -a HOST:PORT -f Data.fs` (`crates/zeo`), each serving a '
        'fresh FileStorage, with 1 and 8 concurrent client processes.',
        '',
        '```sh',
        'bench/zeo/run.sh            # default sizes (about 90 s here, plus the build)',
        'bench/zeo/run.sh --quick    # smoke run',
        'bench/zeo/run.sh --write    # also rewrites this section',
        '```',
        '',
        '`run.sh` builds `cargo build --release -p zeo`, gets the venv of '
        '`tools/python-env.sh`, and for each round, concurrency and server '
        '(Python and bbru interleaved) starts the server on a free loopback '
        'port with a new `Data.fs`, waits until it listens, runs '
        '`bench/zeo/workload.py`, and stops the server with SIGTERM. '
        '`bench/zeo/report.py` makes the table. The workload is defined by '
        'the docstring of `workload.py`; in short, each client process has '
        f'its own OOBTree of N = {first["objects"]} objects '
        f'(PersistentMapping, {first["record_bytes"]} bytes pickled) and the '
        'processes start each phase together (a barrier); a phase\'s rate is '
        'all processes\' objects over the wall time from the first start to '
        'the last end:',
        '',
        f'- **add**: N new objects, {first["per_txn"]} per transaction; '
        f'**update**: change all N, {first["per_txn"]} per transaction.',
        '- **cold**: new processes with a new `ClientStorage` (empty ZEO '
        'client cache) read all N: one server round trip per object (and per '
        'tree bucket).',
        f'- **warm**: object cache emptied (`cacheMinimize`), all N read '
        f'again, {first["repeat"]} times: served by the ZEO client cache, '
        'the server is idle (zodbshootout\'s "hot").',
        f'- **hot**: objects already loaded, read {first["repeat"]} times: no '
        'storage access (zodbshootout\'s "steamin"). warm and hot measure '
        'the client; they are here to show that, and to match '
        'zodbshootout\'s list.',
        '- **server CPU µs/object**: CPU time of the server process, all '
        'threads, during the phase (`/proc/PID/task/*/schedstat`, or '
        '`/proc/PID/stat` if threads came or went), over the objects of the '
        'phase: the server\'s own cost, even where the clients bound the '
        'rate. **client CPU µs/object**: the same for the client processes '
        '(`time.process_time()`, summed).',
        '',
        'zodbshootout itself (0.8.0, 2019, the last release) is not used: on '
        'CPython 3.11 it fails at start with current `pyperf` (`argparse` '
        'conflict on `--profile`), needs an undeclared `six`, and, with '
        '`pyperf<2.3` and `six` added, its `--fast` mode spent more than '
        '5 minutes on one concurrency with 100 objects against one server.',
        '',
        '### Results',
        '',
        f'Run {meta["date"]} with `{meta["command"]}` (N = {first["objects"]} '
        f'objects per process, {first["per_txn"]} per transaction, '
        f'{first["repeat"]} warm/hot passes; median of {"/".join(map(str, rounds))} '
        'rounds).',
        '',
        f'- machine: {meta["cpu"]}, `nproc` = {meta["nproc"]}, {meta["mem"]} '
        f'RAM, kernel {meta["kernel"]}; load average (1/5/15 min) '
        f'{" ".join(meta["loadavg_start"])} before and '
        f'{" ".join(meta["loadavg_end"])} after the runs. The client processes '
        'and the server share these cores, and other processes (builds and '
        'tests of other work on this machine) may have been running: treat '
        'differences of 10-20 % as noise.',
        f'- bbru: {meta["bbru_zeo"]}, {meta["rustc"]}, `cargo build --release`',
        f'- Python: {meta["python"]}, ZODB {meta["zodb"]}, ZEO {meta["zeo"]} '
        '(server and clients)',
        '',
        'Ratio > 1 means bbru-zeo is faster.',
        '',
    ]
    lines = wrap(lines) + [table(runs), '']
    if extra:
        lines += [extra.rstrip('\n'), '']
    lines += [
        '<details><summary>Per-round rates (objects/s)</summary>',
        '',
        '```',
    ]
    for (kind, c), group in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        per = ', '.join(f'{p} ' + '/'.join(f'{r["phases"][p]["per_s"]:.0f}' for r in group)
                        for p in PHASES)
        lines.append(f'{kind:6} c={c}: {per}')
    lines += ['```', '', '</details>', '',
              '<details><summary>Per-round server CPU (µs/object)</summary>', '', '```']
    for (kind, c), group in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        per = ', '.join(
            f'{p} ' + '/'.join(fmt_us(r['phases'][p]['server_cpu_us_per_object'])
                               for r in group)
            for p in ('add', 'update', 'cold'))
        lines.append(f'{kind:6} c={c}: {per}')
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
    if not runs:
        sys.exit(f'report.py: no run results in {args.results_dir}')

    print('Ratio > 1 means bbru-zeo is faster (bbru/Python, objects/s).')
    print(table(runs))

    if args.write:
        extra = ''
        if args.notes:
            with open(args.notes) as f:
                extra = f.read()
        new = section(runs, meta, args.results_dir, extra)
        report_text.write_section(args.write, BEGIN, END, new, heading='')
        print(f'report.py: wrote the ZEO section into {args.write}', file=sys.stderr)


if __name__ == '__main__':
    main()
