"""What the benchmark reports share: filling prose for BENCHMARKS.md, and replacing a
report's own section of it between its markers.

Standard library only: it runs with any python3.  The reports in bench/*/ import it with
their parent directory on sys.path (a name of its own, so no installed package shadows it).
"""
import textwrap


def wrap(lines, width=76):
    """Fill prose lines and '- ' bullets to `width` columns; keep tables, headings,
    HTML comments and fenced code as they are."""
    out = []
    fenced = False
    for line in lines:
        if line.startswith('```'):
            fenced = not fenced
        if fenced or line.startswith(('|', '<', '#', '```')) or len(line) <= width:
            out.append(line)
        elif line.startswith('- '):
            out.append(textwrap.fill(line, width, subsequent_indent='  ',
                                     break_long_words=False, break_on_hyphens=False))
        else:
            out.append(textwrap.fill(line, width, break_long_words=False,
                                     break_on_hyphens=False))
    return out


def write_section(path, begin, end, section, heading=''):
    """Replaces what lies between `begin` and `end` in the file at `path` (the markers
    included, so `section` must hold them) by `section`; appends it, after `heading`,
    when the markers are missing."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = '# Benchmarks\n'
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip('\n') + '\n\n' + heading + section + '\n'
    with open(path, 'w') as f:
        f.write(text)
