"""Merge the two halves of the FileStorage benchmark into one table.

    python3 bench/compare.py PYTHON.json RUST.json META.json [--write BENCHMARKS.md]

PYTHON.json and RUST.json are the outputs of bench/python/filestorage_bench.py
and of the filestorage-bench binary (same keys). META.json describes the
machine and the command (written by bench/run.sh). Prints a Markdown table on
stdout; with --write, replaces the part of BENCHMARKS.md between the
results markers (appending a section if the markers are missing).

Standard library only: it runs with any python3.
"""
import argparse
import json
import sys

import report_text  # bench/report_text.py, beside this file

BEGIN = '<!-- bench:results:begin (written by bench/run.sh --write) -->'
END = '<!-- bench:results:end -->'

# (key, label, unit, kind); kind 'rate': ratio = Rust/Python; 'cost' (a
# time or a size): ratio = Python/Rust. Either way > 1 means Rust is better.
METRICS = [
    ('commit_1_per_s', '(a) commit, 1 new object per txn', 'txn/s', 'rate'),
    ('commit_100_per_s', '(b) commit, 100 new objects per txn', 'txn/s', 'rate'),
    ('objects_100_per_s', '(b) same run, objects', 'objects/s', 'rate'),
    ('load_before_warm_per_s', '(c) loadBefore, warm', 'loads/s', 'rate'),
    ('load_before_cold_per_s', '(c) loadBefore, cold (first pass)', 'loads/s', 'rate'),
    ('open_with_index_s', '(d) read-only open with .index', 's', 'cost'),
    ('open_without_index_s', '(d) read-only open without .index', 's', 'cost'),
    ('index_bytes_per_object', '(e) index memory (RSS growth / objects)', 'bytes/object', 'cost'),
    ('build_big_s', 'writing the big file (1000 objects/txn)', 's', 'cost'),
]


def fmt(value):
    if value is None:
        return 'n/a'
    if isinstance(value, str):
        return value
    v = float(value)
    if v == 0:
        return '0'
    if abs(v) >= 1000:
        return f'{v:,.0f}'
    if abs(v) >= 1:
        return f'{v:.3g}' if abs(v) < 100 else f'{v:.0f}'
    return f'{v:.3g}'


def ratio(py, rs, kind):
    try:
        py, rs = float(py), float(rs)
        r = rs / py if kind == 'rate' else py / rs
    except (TypeError, ValueError, ZeroDivisionError):
        return 'n/a'
    return f'{r:.2f}×'


def table(py, rs):
    rows = ['| metric | unit | Python ZODB 6.4 | bbru (Rust) | ratio |',
            '|---|---|---:|---:|---:|']
    for key, label, unit, kind in METRICS:
        rows.append(f'| {label} (`{key}`) | {unit} | {fmt(py.get(key))} | '
                    f'{fmt(rs.get(key))} | {ratio(py.get(key), rs.get(key), kind)} |')
    rows.append(f'| mean record length (`record_bytes`) | bytes | '
                f'{py.get("record_bytes", 0):.2f} | {rs.get("record_bytes", 0):.2f} | |')
    rows.append(f'| page cache before fresh opens (`cold_cache`) | | '
                f'{py.get("cold_cache")} | {rs.get("cold_cache")} | |')
    return '\n'.join(rows)


def section(py, rs, meta):
    sizes = (f'--objects {rs.get("objects")} --commits {rs.get("commits")} '
             f'--samples {rs.get("samples")}')
    lines = [
        BEGIN,
        '',
        f'Run {meta["date"]} with `{meta["command"]}` ({sizes}).',
        '',
        f'- machine: {meta["cpu"]}, `nproc` = {meta["nproc"]}, '
        f'{meta["mem"]} RAM, kernel {meta["kernel"]}',
        f'- disk: {meta["disk"]}; `fdatasync` of a 100-byte append: '
        f'{meta["fsync_ms"]} ms median ({meta["fsync_note"]})',
        f'- Rust: {meta["rustc"]}, `cargo build --release` (profile.release)',
        f'- Python: {meta["python"]}, ZODB {meta["zodb"]}, BTrees {meta["btrees"]}',
        '',
        'Ratio > 1 means bbru is better: Rust/Python for rates, Python/Rust '
        'for times and bytes.',
        '',
        table(py, rs),
        '',
        '<details><summary>Raw JSON of both halves</summary>',
        '',
        '```json',
        json.dumps(py, indent=1),
        '```',
        '',
        '```json',
        json.dumps(rs, indent=1),
        '```',
        '',
        '</details>',
        '',
        END,
    ]
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('python_json')
    parser.add_argument('rust_json')
    parser.add_argument('meta_json')
    parser.add_argument('--write', metavar='BENCHMARKS_MD')
    args = parser.parse_args()
    with open(args.python_json) as f:
        py = json.load(f)
    with open(args.rust_json) as f:
        rs = json.load(f)
    with open(args.meta_json) as f:
        meta = json.load(f)
    for key in ('objects', 'commits', 'samples'):
        if py.get(key) != rs.get(key):
            sys.exit(f'compare.py: the halves ran different sizes: {key} '
                     f'{py.get(key)} (Python) vs {rs.get(key)} (Rust)')
    if abs(py.get('record_bytes', 0) - rs.get('record_bytes', 0)) > 1e-9:
        print('compare.py: warning: the halves stored records of different '
              'mean length', file=sys.stderr)

    print('Ratio > 1 means bbru is better (Rust/Python for rates, '
          'Python/Rust for times and bytes).')
    print(table(py, rs))

    if args.write:
        new = section(py, rs, meta)
        report_text.write_section(args.write, BEGIN, END, new, heading='## Results\n\n')
        print(f'compare.py: wrote the results into {args.write}', file=sys.stderr)


if __name__ == '__main__':
    main()
