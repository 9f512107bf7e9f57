#!/bin/sh
# One long libFuzzer run of one target, niced, with its log and figures.
#   tools/fuzz-long.sh <fuzz crate dir> <target> [seconds] [max_len]
# e.g. tools/fuzz-long.sh dataplane/fuzz policy_document 1800 4096
# New inputs go to $SCRATCH/<target> (default /tmp/fuzz-scratch), seeds are
# read from <crate>/corpus/<target>; a <crate>/<target>.dict is used if present.
# Built optimized with debug assertions and overflow checks (-O -a): an
# arithmetic overflow is a finding, as it is in the debug test suite.
# The log is $LOGS/<target>.log (default /tmp/fuzz-logs); the last lines give
# the wall time and libFuzzer's final figures.
set -eu
crate=$1 target=$2 secs=${3:-1800} maxlen=${4:-2048}
scratch=${SCRATCH:-/tmp/fuzz-scratch}/$target
logs=${LOGS:-/tmp/fuzz-logs}
mkdir -p "$scratch" "$logs"
log=$logs/$target.log
cd "$crate"
dict=""
[ -f "$target.dict" ] && dict="-dict=$target.dict"
start=$(date +%s)
echo "start $(date -u +%FT%TZ) target=$target secs=$secs max_len=$maxlen" >"$log"
rc=0
RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz run -O -a "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$secs" -max_len="$maxlen" -print_final_stats=1 $dict >>"$log" 2>&1 || rc=$?
end=$(date +%s)
echo "end $(date -u +%FT%TZ) wall=$((end - start))s rc=$rc corpus=$(ls "$scratch" | wc -l)" >>"$log"
