#!/usr/bin/env bash
# What observability costs the worker (issue 13), gatewayd alone on engine.sh's
# devices and captures (GW_ONLY=1 benches/engine.sh: no testpmd runs), in
# alternating rounds:
#
#   rule-hits  est-1k and syn-verify with per-rule hit counting (gatewayd's
#              default) and without (GATEWAYD_RULE_HITS=off: the policy gets no
#              slots). Target: the rate with counting >= 0.98 x without.
#   scrape     est-1k with [control] and [metrics], /metrics fetched every
#              100 ms by curl during the run, and not fetched. Target: the rate
#              scraped >= 0.99 x not. The scraper runs on CPU 0, beside
#              gatewayd's control thread (SCRAPER_CPU; "" lets the kernel place
#              it, also on the worker's core 1): on this 2-CPU machine a curl
#              on the worker's core takes the core from it, which is the
#              scraper's cost, not the gateway's.
#
# Prints each round's Mpps (the median of gatewayd's 1-second samples after
# two of warm-up, as engine.sh does), then per case the medians and the median
# of the per-round ratios, with the load average before and after: the
# machine is shared, so compare within a round, not across runs.
#
#   benches/observability.sh [rounds (3)] [seconds-per-run (8)] [rule-hits] [scrape]
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
ROUNDS=${1:-3}; SECS=${2:-8}
shift $(($# < 2 ? $# : 2))
PARTS=("$@"); [ ${#PARTS[@]} -gt 0 ] || PARTS=(rule-hits scrape)
D=$(mktemp -d /tmp/gw-obs-bench.XXXXXX)
SCRAPER=
cleanup() { [ -z "$SCRAPER" ] || kill "$SCRAPER" 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT

# engine.sh's gatewayd Mpps for CASE (its RESULT line's gw_mpps, one round)
gw() {
    GW_ONLY=1 bash benches/engine.sh "$SECS" "$1" 2>&1 | tee -a "$D/engine.log" |
        awk '/^RESULT / {for (i = 1; i <= NF; i++) if ($i ~ /^gw_mpps=/) {sub(/^gw_mpps=/, "", $i); print $i; exit}}'
}

med() { tr ' ' '\n' | grep -v '^$' | median; }
ratios() { paste -d' ' <(tr ' ' '\n' <<<"$1" | grep -v '^$') <(tr ' ' '\n' <<<"$2" | grep -v '^$') | awk '{if ($2 > 0) print $1 / $2}' | median; }
load() { uptime | sed 's/.*load average: //'; }

RESULTS=()
for part in "${PARTS[@]}"; do
    case $part in
    rule-hits)
        for c in est-1k syn-verify; do
            on="" off=""
            for r in $(seq 1 "$ROUNDS"); do
                l0=$(load)
                a=$(gw "$c"); b=$(GATEWAYD_RULE_HITS=off gw "$c")
                echo "rule-hits $c round $r: counting $a Mpps, not counting $b Mpps (load $l0 -> $(load))"
                on+=" $a" off+=" $b"
            done
            RESULTS+=("$(printf 'rule-hits %-11s counting %s  not %s  counting/not %s  (target >= 0.98)' \
                "$c" "$(med <<<"$on")" "$(med <<<"$off")" "$(ratios "$on" "$off")")")
        done
        ;;
    scrape)
        port=$(( 20000 + $$ % 20000 ))
        on="" off="" scrapes=0
        for r in $(seq 1 "$ROUNDS"); do
            for mode in scraped not; do
                rm -rf "$D/state"
                export GW_EXTRA_TOML
                GW_EXTRA_TOML=$(printf '[control]\nsocket = "%s/gw.sock"\nreadonly_socket = ""\nstate_dir = "%s/state"\n[metrics]\nlisten = "127.0.0.1:%d"\n' "$D" "$D" "$port")
                l0=$(load)
                if [ $mode = scraped ]; then
                    pin=(); [ -z "${SCRAPER_CPU-0}" ] || pin=(taskset -c "${SCRAPER_CPU-0}")
                    ( while sleep 0.1; do "${pin[@]}" curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/metrics" || true; done >> "$D/scrapes" ) &
                    SCRAPER=$!
                fi
                v=$(gw est-1k)
                if [ $mode = scraped ]; then kill "$SCRAPER" 2>/dev/null || true; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=; on+=" $v"; else off+=" $v"; fi
                echo "scrape est-1k round $r: $mode $v Mpps (load $l0 -> $(load))"
            done
        done
        unset GW_EXTRA_TOML
        scrapes=$(grep -c '^200$' "$D/scrapes" 2>/dev/null || echo 0)
        RESULTS+=("$(printf 'scrape    %-11s scraped %s  not %s  scraped/not %s  (target >= 0.99; %s scrapes answered 200)' \
            est-1k "$(med <<<"$on")" "$(med <<<"$off")" "$(ratios "$on" "$off")" "$scrapes")")
        ;;
    *) echo "unknown part $part (rule-hits, scrape)" >&2; exit 2 ;;
    esac
done
echo
echo "machine: $(nproc) cpus, load now $(load); ${ROUNDS} rounds, ${SECS}s per run (Mpps: medians)"
printf '%s\n' "${RESULTS[@]}"
