"""Make the concurrent creations benchmark's table.

    python3 bench/web/create_report.py RESULTS_DIR [--write BENCHMARKS.md] [--notes FILE]

RESULTS_DIR holds what bench/web/create.sh wrote: levels.jsonl (one JSON
object per number of clients, from web-create: clients, instances, seconds,
created, creations_per_s, statuses, transport_errors, latency_ms, retries,
given_up, conflicts_resolved, conflicts_unresolved, present_on_every_instance)
and meta.json (machine, versions, command). Prints the section as Markdown.
With --write, replaces the part of BENCHMARKS.md between the creations
markers (appending the section if they are missing); the other sections are
left alone. --notes: Markdown put below the table (the analysis).

Standard library only: it runs with any python3.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import report_text  # noqa: E402  (bench/report_text.py)

BEGIN = '<!-- bench:web-create:start -->'
END = '<!-- bench:web-create:end -->'


def load(results_dir):
    with open(os.path.join(results_dir, 'levels.jsonl')) as f:
        levels = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(results_dir, 'meta.json')) as f:
        meta = json.load(f)
    return levels, meta


def others(level):
    """Answers other than 201 and 409, and transport errors."""
    parts = [f'{n} × {s}' for s, n in sorted(level['statuses'].items())
             if s not in ('201', '409')]
    if level['transport_errors']:
        parts.append(f'{level["transport_errors"]} transport')
    return ', '.join(parts) or '0'


def table(levels):
    lines = ['| clients | creations/s | created | 409 | other failures | latency p50 (ms) '
             '| latency p99 (ms) | retries | conflicts merged | conflicts not merged '
             '| all on both instances |',
             '|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|']
    for lv in levels:
        lines.append(
            f'| {lv["clients"]} | {lv["creations_per_s"]:,.0f} | {lv["created"]:,} '
            f'| {lv["statuses"].get("409", 0)} | {others(lv)} '
            f'| {lv["latency_ms"]["p50"]:.1f} | {lv["latency_ms"]["p99"]:.1f} '
            f'| {lv["retries"]} | {lv["conflicts_resolved"]} | {lv["conflicts_unresolved"]} '
            f'| {"yes" if lv["present_on_every_instance"] else "**no**"} |')
    return '\n'.join(lines)


def section(levels, meta, notes):
    la_start = ' '.join(meta['loadavg_start'])
    la_end = ' '.join(meta['loadavg_end'])
    instances = levels[0]['instances'] if levels else 0
    lines = [
        BEGIN,
        '',
        '## Concurrent creations in one folder',
        '',
        f'Pages created per second into one folder through the JSON API by 1, 4 and 16 '
        f'concurrent clients, against {instances} `bbru serve` instances (release build, '
        f'default settings: 16 connections, `conflict_retries = 8`) of one `bbru-zeo`, '
        f'each client\'s requests alternating between the instances.',
        '',
        '```sh',
        'bench/web/create.sh            # 10 s per level (about 40 s here, plus the build)',
        'bench/web/create.sh --quick    # 3 s per level',
        'bench/web/create.sh --write    # also rewrites this section',
        '```',
        '',
        '`create.sh` builds `cargo build --release -p bbru -p zeo -p bbru-bench`, starts '
        '`bbru-zeo` on a new `Data.fs` and the two instances (one after the other: the '
        'first creates the site), and runs `web-create` (`bench/src/bin/web_create.rs`): '
        'for each level a new folder, then one thread per client, each with one request '
        'in flight (closed loop), `POST`ing a Page of a name of its own (`Authorization: '
        'Bearer`, a token from `/@login`) for the whole level. Around each level it reads '
        'the instances\' `/@@metrics` (retries: requests run again after a conflict; '
        'conflicts merged by a resolver; conflicts no resolver merged), and after it '
        'lists the folder on both instances to check every acknowledged creation. '
        'A 409 is a creation that still conflicted after the instance\'s three retries. '
        '`bench/web/create_report.py` makes the table.',
        '',
        '### Results',
        '',
        f'Run {meta["date"]} with `{meta["command"]}`, {meta["seconds"]:g} s per level.',
        '',
        f'- machine: {meta["cpu"]}, `nproc` = {meta["nproc"]}, {meta["mem"]} RAM, '
        f'kernel {meta["kernel"]}; load average (1/5/15 min) {la_start} before and '
        f'{la_end} after the runs. The clients, both instances and `bbru-zeo` share these '
        f'cores, and other processes (builds and tests of other work on this machine) may '
        f'have been running.',
        f'- {meta["rustc"]}, `cargo build --release`',
        '',
        table(levels),
        '',
    ]
    if notes:
        lines += notes.rstrip().split('\n') + ['']
    lines.append(END)
    return '\n'.join(report_text.wrap(lines)) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results_dir')
    parser.add_argument('--write', metavar='BENCHMARKS.md')
    parser.add_argument('--notes', metavar='FILE')
    args = parser.parse_args()
    levels, meta = load(args.results_dir)
    notes = None
    if args.notes:
        with open(args.notes) as f:
            notes = f.read()
    text = section(levels, meta, notes)
    print(text)
    bad = [str(lv['clients']) for lv in levels
           if others(lv) != '0' or not lv['present_on_every_instance']]
    if bad:
        print(f'create_report.py: failures at {", ".join(bad)} clients', file=sys.stderr)
    if args.write:
        report_text.write_section(args.write, BEGIN, END, text.rstrip('\n'))
        print(f'create_report.py: wrote the creations section of {args.write}',
              file=sys.stderr)


if __name__ == '__main__':
    main()
