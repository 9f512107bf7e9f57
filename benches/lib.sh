# Sourced by the benches/*.sh scripts, for what every one of them does first,
# and for the rounds, ratios and result lines the comparison benches share.
#
#   bench_init   cd to the repository, refuse to run unless root, put cargo on
#                PATH, set T (the release build directory)
#   bench_opts ARGS...
#                leading options of the comparison benches: --rounds N (default
#                5, or $ROUNDS), --quick (1 round, short runs: a smoke test,
#                not a figure). Sets ROUNDS and QUICK; the other arguments are
#                left in the array ARGS.
#   bench_mem    MEM: the EAL memory arguments, 512 MB of hugepages when at
#                least 300 pages are free, else --no-huge (about half as fast)
#   bench_hugepages MB
#                make sure MB of 2 MiB hugepages are free, reserving more when
#                the machine has the memory (MemAvailable - 4 GiB) and giving
#                them back at exit (bench_cleanup); 0 (failure) when it cannot
#   bench_tsc_hz TSC_HZ: the TSC frequency the EAL measures (its debug log), or
#                $TSC_HZ when set; cycles per frame are TSC_HZ / rate: a
#                busy-polling core spends every cycle on the frames it moves
#   median       the median of the numbers on stdin (0 if none)
#   spread       "median min max" of the numbers on stdin ("0 0 0" if none)
#   cpf MPPS     TSC cycles per frame at MPPS on one core ("-" if MPPS is 0)
#   loadavg      the 1/5/15-minute load average, "1.10/0.95/0.80"
#   round_order R
#                "tp gw" in odd rounds, "gw tp" in even ones: each side runs
#                first as often as second, so load that grows or fades during
#                a round does not favour one side
#   report_case BENCH CASE PROBLEMS NAME=VALUES... -- RATIO=NUM/DEN...
#                prints, for one case, each side's per-round rates, median Mpps
#                and cycles per frame, each ratio's per-round values, median
#                and min-max, and a final parsable line:
#                RESULT bench=B case=C rounds=N <side>_mpps=M <side>_cpf=C ...
#                <ratio>=MEDIAN <ratio>_min=… <ratio>_max=… tsc_hz=… load_start=…
#                load_end=… problems=none|what went wrong (no spaces);
#                load_start is $CASE_LOAD (set it when a case starts) or the
#                load when the script started
#                NAME=VALUES is a side and its per-round Mpps, comma-separated
#                (with UNIT set to another unit than Mpps, e.g. connections/s,
#                its values, keyed <side>_$UNIT_KEY, and no cycles per frame)
#                (e.g. gw=20.1,19.8,21.0); RATIO=NUM/DEN names two sides
#                (e.g. gw_io=gw/io).
#   wait_socket SOCK LOG
#                wait (up to 20 s) for gatewayd's control socket; on failure
#                print its log and exit

bench_init() {
    cd "$(dirname "$0")/.."
    [ "$(id -u)" = 0 ] || { echo "run as root (hugepages, namespaces)" >&2; exit 1; }
    [ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
    T=${CARGO_TARGET_DIR:-target}/release
    LOAD_START=$(loadavg)
    HUGE_ADDED=0
}

bench_opts() {
    ROUNDS=${ROUNDS:-5} QUICK=${QUICK:-0} ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
        --quick) QUICK=1 ROUNDS=1 ;;
        --rounds) ROUNDS=${2:?--rounds N}; shift ;;
        --rounds=*) ROUNDS=${1#*=} ;;
        *) ARGS+=("$1") ;;
        esac
        shift
    done
    [ "$ROUNDS" -ge 1 ] 2>/dev/null || { echo "--rounds wants a number >= 1" >&2; exit 2; }
}

bench_mem() {
    MEM=(-m 512)
    [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -ge 300 ] || MEM=(--no-huge -m 512)
}

HP_NR=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
bench_hugepages() {
    local want=$(($1 / 2)) free avail_mb more
    free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
    [ "$free" -ge "$want" ] && return 0
    more=$((want - free))
    avail_mb=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
    if [ $((avail_mb - 4096)) -lt $((more * 2)) ] || [ ! -w "$HP_NR" ]; then
        echo "  (hugepages: $free free, $want wanted, ${avail_mb} MB available: not reserving more)" >&2
        return 1
    fi
    echo $(($(cat "$HP_NR") + more)) > "$HP_NR"
    free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
    HUGE_ADDED=$((HUGE_ADDED + more))
    echo "  (hugepages: reserved $more more for this run, $free free now; given back at exit)" >&2
    [ "$free" -ge "$want" ]
}

# Gives back the hugepages bench_hugepages reserved, and removes the hugepage
# files a DPDK process of this script left behind (one killed before its EAL
# cleanup keeps its pages: later runs would fall back to --no-huge); the
# scripts' EXIT traps call it. The file prefixes the scripts give are a few
# letters and their own PID.
bench_cleanup() {
    local p
    for p in tpm gwb gwe gwp tpp tsc; do rm -f /dev/hugepages/"$p$$"map_* 2>/dev/null || true; done
    if [ "${HUGE_ADDED:-0}" -gt 0 ] && [ -w "$HP_NR" ]; then
        echo $(($(cat "$HP_NR") - HUGE_ADDED)) > "$HP_NR" || true
        HUGE_ADDED=0
    fi
}

bench_tsc_hz() {
    if [ -z "${TSC_HZ:-}" ]; then
        TSC_HZ=$(timeout 20 dpdk-testpmd -l 0 --no-pci --no-huge -m 64 --log-level 'lib.eal:debug' \
            --file-prefix "tsc$$" -- --help 2>&1 | awk '/TSC frequency is/ {gsub(/[^0-9]/, "", $5); printf "%.0f\n", $5 * 1000; exit}')
    fi
    if [ -z "$TSC_HZ" ] || [ "$TSC_HZ" = 0 ]; then
        TSC_HZ=$(awk '/^cpu MHz/ {print int($4 * 1e6); exit}' /proc/cpuinfo)
        echo "(TSC frequency not in the EAL log: using cpu MHz, $TSC_HZ Hz)" >&2
    fi
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) {print 0} else if (NR % 2) {print a[(NR+1)/2]} else {print (a[NR/2] + a[NR/2+1]) / 2}}'; }

spread() {
    sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) {print "0 0 0"; exit}
        m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
        print m, a[1], a[NR]}'
}

cpf() { awk -v m="$1" -v hz="${TSC_HZ:-0}" 'BEGIN {if (m > 0 && hz > 0) printf "%.0f", hz / (m * 1e6); else printf "-"}'; }

loadavg() { awk '{print $1 "/" $2 "/" $3}' /proc/loadavg; }

round_order() { if [ $(($1 % 2)) = 1 ]; then echo "tp gw"; else echo "gw tp"; fi; }

report_case() {
    local bench=$1 case=$2 problems=$3; shift 3
    local -A vals=()
    local sides=() res="RESULT bench=$bench case=$case rounds=$ROUNDS" kv name list m lo hi
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        name=${1%%=*}; list=${1#*=}; shift
        sides+=("$name"); vals[$name]=$list
        read -r m lo hi < <(tr , '\n' <<<"$list" | spread)
        if [ "${UNIT:-Mpps}" = Mpps ]; then
            printf '  %-8s Mpps per round: %-40s median %7.3f  (%s cycles/frame)\n' "$name" "${list//,/ }" "$m" "$(cpf "$m")"
            res+=" ${name}_mpps=$m ${name}_cpf=$(cpf "$m")"
        else
            printf '  %-8s %s per round: %-40s median %s\n' "$name" "$UNIT" "${list//,/ }" "$m"
            res+=" ${name}_${UNIT_KEY:-value}=$m"
        fi
    done
    [ "${1:-}" = -- ] && shift
    for kv in "$@"; do
        name=${kv%%=*}
        local num=${kv#*=}; local den=${num#*/}; num=${num%/*}
        local rs
        rs=$(paste -d ' ' <(tr , '\n' <<<"${vals[$num]}") <(tr , '\n' <<<"${vals[$den]}") |
            awk '{printf "%s%.3f", (NR > 1 ? "," : ""), ($2 > 0 ? $1 / $2 : 0)}')
        read -r m lo hi < <(tr , '\n' <<<"$rs" | spread)
        printf '  %-8s per round: %-40s median %.3f  (min-max %.3f-%.3f)\n' "$name" "${rs//,/ }" "$m" "$lo" "$hi"
        res+=" $name=$m ${name}_min=$lo ${name}_max=$hi"
    done
    [ "${UNIT:-Mpps}" = Mpps ] && res+=" tsc_hz=${TSC_HZ:-0}"
    RESULTS+=("$res load_start=${CASE_LOAD:-$LOAD_START} load_end=$(loadavg) problems=${problems:-none}")
    echo "${RESULTS[-1]}"
}

wait_socket() {
    for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.1; done
    cat "$2"
    echo "gatewayd did not open its control socket $1" >&2
    exit 1
}
