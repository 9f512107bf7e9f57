#!/usr/bin/env python3
"""The longest functions in Rust sources: `tools/fn-lengths.py [N] DIR...`.

Counts lines from a `fn` line to its closing brace (braces in strings and
comments are mostly skipped; good enough for a size report, not a parser).
"""
import re
import sys
from pathlib import Path

FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+(\w+)')


def strip(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split('//', 1)[0]


def lengths(path):
    lines = path.read_text(errors='replace').splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            s = strip(lines[j])
            if not started and ';' in s and '{' not in s:
                break  # a declaration without a body
            depth += s.count('{') - s.count('}')
            started = started or '{' in s
            if started and depth <= 0:
                out.append((j - i + 1, f'{path}:{i + 1}', m.group(7)))
                break
            j += 1
        i += 1
    return out


def main():
    args = sys.argv[1:]
    n = int(args.pop(0)) if args and args[0].isdigit() else 5
    found = []
    for d in args:
        for p in sorted(Path(d).rglob('*.rs')):
            found.extend(lengths(p))
    for length, where, name in sorted(found, reverse=True)[:n]:
        print(f'{length:5} {name:40} {where}')


if __name__ == '__main__':
    main()
