#!/usr/bin/env python3
"""Picks a few corpus inputs worth committing: greedy set cover over the
features libFuzzer reports for each input (the control file of -merge=1 -set_cover_merge=1, whose FT lines hold each input's full feature set), starting
from what the committed seeds already cover, so N files keep as much of a
long run's coverage as N files can.

  tools/fuzz-pick.py <fuzz binary> <scratch corpus> <committed corpus dir> [N=24]

Replaces <committed corpus dir>/kept-* and prints the share of the run's
features the seeds, and the seeds plus the picked inputs, cover.
"""
import hashlib, os, shutil, subprocess, sys, tempfile

binary, scratch, committed = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 24
for f in os.listdir(committed):
    if f.startswith("kept-"):
        os.remove(os.path.join(committed, f))
with tempfile.TemporaryDirectory() as tmp:
    # a copy: a running fuzzer replaces inputs it reduces
    scratch = shutil.copytree(scratch, os.path.join(tmp, "scratch"))
    control, merged = os.path.join(tmp, "control"), os.path.join(tmp, "m")
    os.mkdir(merged)
    r = subprocess.run(["nice", "-n", "10", binary, "-merge=1", "-set_cover_merge=1", "-merge_control_file=" + control, merged, committed, scratch],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    paths, seeds = {}, set()
    for d in (scratch, committed):
        for f in os.listdir(d):
            p = os.path.join(d, f)
            h = hashlib.sha1(open(p, "rb").read()).hexdigest()
            paths.setdefault(h, p)
            if d == committed:
                seeds.add(h)
    if r.returncode != 0:
        sys.exit("the merge failed:\n" + r.stderr.decode(errors="replace")[-3000:])
    # The control file: file count, initial count, the paths, then per input
    # "STARTED i size", "FT i features...", "COV i edges...".
    lines = open(control).read().split("\n")
    count = int(lines[0])
    files = lines[2 : 2 + count]
    sets = {}
    for line in lines[2 + count :]:
        if line.startswith("FT "):
            parts = line.split()
            h = hashlib.sha1(open(files[int(parts[1])], "rb").read()).hexdigest()
            sets[h] = set(map(int, parts[2:]))
    total = set().union(*sets.values()) if sets else set()
    covered = set()
    for h in seeds:
        covered |= sets.pop(h, set())
    base = len(covered)
    cands = {h: s for h, s in sets.items() if h in paths}
    picked = []
    for _ in range(n):
        best = max(cands, key=lambda k: (len(cands[k] - covered), -os.path.getsize(paths[k])), default=None)
        if best is None or not cands[best] - covered:
            break
        picked.append(best); covered |= cands.pop(best)
    for i, k in enumerate(picked):
        shutil.copy(paths[k], os.path.join(committed, "kept-%02d" % i))
    pct = lambda x: 100 * x / max(1, len(total))
    print("%d features in the run; seeds cover %d (%.0f%%); seeds + %d kept inputs %d (%.0f%%)"
          % (len(total), base, pct(base), len(picked), len(covered), pct(len(covered))))
