"""Make the web benchmark's table.

    python3 bench/web/report.py RESULTS_DIR [--write BENCHMARKS.md] [--notes FILE]

RESULTS_DIR holds what bench/web/run.sh wrote: STORAGE-TARGET.json (one
line of bench/web/summary.lua: requests, duration_us, errors, latency_us)
and STORAGE-TARGET.cost.json (storage_loads, instance_cpu_ticks,
server_cpu_ticks, clock_ticks_per_s over the measured run) for STORAGE in
embedded, zeo-client, zeo-client-no-lease and TARGET in page, rendered,
folder, nested; and
meta.json (machine, versions, command, wrk settings). Prints the section as
Markdown. With --write, replaces the part of BENCHMARKS.md between the web
markers (appending the section if they are missing); the other sections are
left alone. --notes: Markdown put below the table (the analysis,
bench/web/observations.md).

Standard library only: it runs with any python3.
"""
import argparse
import json
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import report_text  # noqa: E402  (bench/report_text.py)

BEGIN = '<!-- bench:web:start -->'
END = '<!-- bench:web:end -->'
STORAGES = (
    ('embedded', 'embedded FileStorage'),
    ('zeo-client', 'ZEO client of `bbru-zeo` (read leases)'),
    ('zeo-client-no-lease', 'ZEO client of `bbru-zeo --lease-ms 0` (a round trip each)'),
)
TARGETS = (
    ('page', 'page view `/page`'),
    # A query string keeps a view out of the page cache (web/page_cache.rs): the
    # page is made for each request, as for a logged-in user.
    ('rendered', 'page view made each time `/page?render=1`'),
    ('folder', 'folder listing `/folder`'),
    # A page one level down: its section navigation lists the root's items and 30 of
    # its folder's (NAV_ITEMS_MAX), each a loaded object and a permission check.
    ('nested', 'page in the folder `/folder/folder-001`'),
)


def load(results_dir):
    runs = {}
    for storage, _ in STORAGES:
        for target, _ in TARGETS:
            path = os.path.join(results_dir, f'{storage}-{target}.json')
            with open(path) as f:
                runs[storage, target] = json.load(f)
            with open(os.path.join(results_dir, f'{storage}-{target}.cost.json')) as f:
                runs[storage, target]['cost'] = json.load(f)
    # The anchor (web-anchor: an axum handler answering /page's bytes from memory).
    path = os.path.join(results_dir, 'anchor-page.json')
    if os.path.exists(path):
        with open(path) as f:
            runs['anchor', 'page'] = json.load(f)
        with open(os.path.join(results_dir, 'anchor-page.cost.json')) as f:
            runs['anchor', 'page']['cost'] = json.load(f)
    with open(os.path.join(results_dir, 'meta.json')) as f:
        meta = json.load(f)
    return runs, meta


def errors(run):
    e = run['errors']
    parts = [f'{e[k]} {k}' for k in ('connect', 'read', 'write', 'timeout') if e[k]]
    if e['status']:
        parts.append(f'{e["status"]} non-2xx/3xx')
    return ', '.join(parts) or '0'


def ms(us):
    return f'{us / 1000:.2f}'


def per_request(run, ticks):
    """CPU µs per request from clock ticks (None: not measured)."""
    if ticks is None:
        return '–'
    seconds = ticks / run['cost']['clock_ticks_per_s']
    return f'{seconds * 1e6 / run["requests"]:.0f}'


def table(runs, pages):
    lines = ['| storage | request | requests/s | latency p50 (ms) | latency p99 (ms) '
             '| latency max (ms) | instance CPU µs/request | storage loads/request '
             '| `bbru-zeo` CPU µs/request | errors |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---|']
    rows = [(s, sn, t, tn) for s, sn in STORAGES for t, tn in TARGETS]
    if ('anchor', 'page') in runs:
        rows.insert(0, ('anchor', 'anchor: an axum handler, the same bytes from memory',
                        'page', TARGETS[0][1]))
    for storage, storage_name, target, target_name in rows:
        r = runs[storage, target]
        cost = r['cost']
        rate = r['requests'] / (r['duration_us'] / 1e6)
        what = target_name + (f' ({pages} pages)' if target == 'folder' else '')
        lines.append(
            f'| {storage_name} | {what} | {rate:,.0f} | {ms(r["latency_us"]["p50"])} '
            f'| {ms(r["latency_us"]["p99"])} | {ms(r["latency_us"]["max"])} '
            f'| {per_request(r, cost["instance_cpu_ticks"])} '
            f'| {cost["storage_loads"] / r["requests"]:.2f} '
            f'| {per_request(r, cost["server_cpu_ticks"])} | {errors(r)} |')
    return '\n'.join(lines)


def ratios(runs, storage='zeo-client'):
    """A ZEO client's rate over the embedded one's, per target."""
    rate = lambda r: r['requests'] / r['duration_us']
    return '; '.join(
        f'{name}: {rate(runs[storage, t]) / rate(runs["embedded", t]):.2f}'
        for t, name in TARGETS)


def anchor_ratios(runs):
    """The anchor's rate over the page view's, embedded and through ZEO ('' if the
    anchor was not measured)."""
    if ('anchor', 'page') not in runs:
        return ''
    rate = lambda r: r['requests'] / r['duration_us']
    anchor = rate(runs['anchor', 'page'])
    return (f'Anchor / page view, requests/s: embedded '
            f'{anchor / rate(runs["embedded", "page"]):.2f}, ZEO client '
            f'{anchor / rate(runs["zeo-client", "page"]):.2f}.')


def section(runs, meta, notes):
    wrap = lambda text: textwrap.fill(text, 76)
    la_start = ' '.join(meta['loadavg_start'])
    la_end = ' '.join(meta['loadavg_end'])
    parts = [
        BEGIN,
        '',
        '## Web application (`bbru serve`) under wrk',
        '',
        wrap('Requests per second and latency of `bbru serve` (release build) for '
             'anonymous GETs of a page, of a folder listing and of a page in that '
             'folder (whose section navigation lists the folder), first on an embedded '
             'FileStorage, then as the ZEO client of a `bbru-zeo` serving the same '
             '`Data.fs` (same content, same instance settings).'),
        '',
        '```sh',
        'bench/web/run.sh            # 10 s per run (about 1 min here, plus the build)',
        'bench/web/run.sh --quick    # 3 s runs',
        'bench/web/run.sh --write    # also rewrites this section',
        '```',
        '',
        wrap('`run.sh` builds `cargo build --release -p bbru -p zeo`, writes a '
             '`site.toml` that declares the bootstrap manager (the first start creates '
             'the site), starts `bbru serve --file Data.fs` in a scratch directory, and '
             'creates the content with `bench/web/populate.py`: `/page`, a Markdown page '
             'of about 1.5 KB (heading, list, link, emphasis), and `/folder`, a folder '
             'of pages with a title and a description each. Each target is warmed up '
             '(2 s of wrk), then measured with `wrk -t T -c C -d S` and '
             '`bench/web/summary.lua`. Then the instance stops, `bbru-zeo` serves the '
             'same file, an instance starts with `--zeo`, and the same two targets are '
             'measured again. Around each measured run it reads the CPU time of the '
             'instance and of `bbru-zeo` (`/proc/PID/stat`) and the instance\'s '
             '`bbru_storage_loads_total` (`/@@metrics`: objects loaded from the storage, '
             'that is, connection cache misses); the table divides them by the requests '
             'wrk counted. Between the two, the anchor: `web-anchor` '
             '(`bench/src/bin/web_anchor.rs`), an axum handler on the same runtime as '
             '`bbru serve` answering the bytes of `/page` from memory, measured the '
             'same way: what the HTTP stack and wrk cost here without any application '
             'work. `bench/web/report.py` makes the table.'),
        '',
        '### Results',
        '',
        wrap(f'Run {meta["date"]} with `{meta["command"]}`: wrk {meta["threads"]} '
             f'threads, {meta["connections"]} connections, {meta["duration_s"]} s per '
             f'run, content created through the {meta["populated_through"]}.'),
        '',
        wrap(f'- machine: {meta["cpu"]}, `nproc` = {meta["nproc"]}, {meta["mem"]} RAM, '
             f'kernel {meta["kernel"]}; load average (1/5/15 min) {la_start} before and '
             f'{la_end} after the runs. wrk, the instance (and `bbru-zeo`) share these '
             'cores, and other processes (builds and tests of other work on this '
             'machine) may have been running.').replace('\n', '\n  '),
        f'- {meta["rustc"]}, `cargo build --release`; {meta["wrk"]}',
        '',
        table(runs, meta['pages']),
        '',
        f'ZEO client / embedded, requests/s, with read leases: {ratios(runs)}; '
        f'without (a round trip each): {ratios(runs, "zeo-client-no-lease")}.',
        '',
    ]
    if anchor_ratios(runs):
        parts += [anchor_ratios(runs), '']
    if notes:
        parts += [notes.rstrip(), '']
    parts.append(END)
    return '\n'.join(parts) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results_dir')
    parser.add_argument('--write', metavar='BENCHMARKS.md')
    parser.add_argument('--notes', metavar='FILE')
    args = parser.parse_args()
    runs, meta = load(args.results_dir)
    notes = None
    if args.notes:
        with open(args.notes) as f:
            notes = f.read()
    text = section(runs, meta, notes)
    print(text)
    bad = [f'{s}-{t}' for (s, t), r in runs.items() if errors(r) != '0']
    if bad:
        print(f'report.py: errors in {", ".join(bad)}: see the .txt files', file=sys.stderr)
    if args.write:
        report_text.write_section(args.write, BEGIN, END, text.rstrip('\n'))
        print(f'report.py: wrote the web section of {args.write}', file=sys.stderr)


if __name__ == '__main__':
    main()
