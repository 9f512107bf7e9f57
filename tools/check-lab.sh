#!/usr/bin/env bash
# check-lab.sh: static checks of the lab and load-test files (issue 7).
#
#   - luac -p on every Lua script in tools/pktgen-scripts, then each scenario
#     script run under lua5.4 against test/pktgen_stub.lua as pktgen 24.10,
#     the branch (the -24.pkt flag files) the real pktgen here cannot reach:
#     23.06.1 runs the scripts for real in controlplane/tests/e2e_pktgen.rs;
#   - ruby -c Vagrantfile, and `vagrant validate --ignore-provider` if vagrant exists;
#   - bash -n deploy/*.sh;
#   - systemd-analyze verify deploy/gatewayd.service, any warning = failure;
#   - deploy/*.toml parsed as TOML, and `gatewayd --check` if a gatewayd binary is built.
#
# Prints each check; exits non-zero if any check failed. A tool that is not
# installed is reported as SKIP (luac is required: install lua5.4).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
fail=0
pass=0
skip=0
ok() { echo "PASS  $*"; pass=$((pass + 1)); }
bad() { echo "FAIL  $*"; fail=$((fail + 1)); }
skp() { echo "SKIP  $*"; skip=$((skip + 1)); }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --- Lua ---------------------------------------------------------------------
LUAC=$(command -v luac5.4 || command -v luac5.3 || command -v luac || true)
LUA=$(command -v lua5.4 || command -v lua5.3 || true)
shopt -s nullglob
lua_files=(tools/pktgen-scripts/*.lua tools/pktgen-scripts/test/*.lua)
if [ -z "$LUAC" ]; then
    bad "luac not found (apt-get install lua5.4): ${#lua_files[@]} Lua scripts unchecked"
elif [ ${#lua_files[@]} -eq 0 ]; then
    bad "no Lua scripts under tools/pktgen-scripts"
else
    for f in "${lua_files[@]}"; do
        if out=$("$LUAC" -p "$f" 2>&1); then ok "luac -p $f"; else bad "luac -p $f: $out"; fi
    done
fi
if [ -n "$LUA" ]; then
    for f in tools/pktgen-scripts/*.lua; do
        [ "$(basename "$f")" = gw_common.lua ] && continue
        for v in "Pktgen 24.10.0"; do
            if out=$(cd tools/pktgen-scripts && STUB_PKTGEN_VERSION=$v GW_DURATION_MS=2000 \
                    "$LUA" test/pktgen_stub.lua "$(basename "$f")" 2>&1) && grep -q "RESULT" <<<"$out"; then
                ok "$f runs against the API stub as $v"
            else
                bad "$f against the API stub as $v: $(tail -3 <<<"$out")"
            fi
        done
    done
    for pkt in tools/pktgen-scripts/*.pkt; do
        if grep -v '^#' "$pkt" | grep -v '^[[:space:]]*$' | grep -qvE '^range 0 tcp (flag (set|clr) (syn|ack)|flags (clr|syn|ack))$'; then
            bad "$pkt: a line that is not a known range tcp flag command"
        else
            ok "$pkt: only range tcp flag commands"
        fi
    done
else
    skp "lua interpreter not found: pktgen scripts not run against the API stub"
fi

# --- Vagrantfile -----------------------------------------------------------------
if command -v ruby >/dev/null; then
    if out=$(ruby -c Vagrantfile 2>&1); then ok "ruby -c Vagrantfile"; else bad "ruby -c Vagrantfile: $out"; fi
else
    skp "ruby not found: Vagrantfile syntax unchecked (apt-get install ruby)"
fi
if command -v vagrant >/dev/null; then
    mkdir -p "$TMP/vagrant/deploy"
    cp Vagrantfile "$TMP/vagrant/" && cp deploy/*.sh "$TMP/vagrant/deploy/"
    if out=$(cd "$TMP/vagrant" && VAGRANT_CHECKPOINT_DISABLE=1 timeout 300 vagrant validate --ignore-provider 2>&1); then
        ok "vagrant validate --ignore-provider"
    else
        bad "vagrant validate: $(tail -5 <<<"$out")"
    fi
else
    skp "vagrant not found: vagrant validate not run"
fi

# --- deploy/ ---------------------------------------------------------------------
for sh in deploy/*.sh; do
    if out=$(bash -n "$sh" 2>&1); then ok "bash -n $sh"; else bad "bash -n $sh: $out"; fi
done

UNIT=deploy/gatewayd.service
if [ ! -f "$UNIT" ]; then
    bad "$UNIT missing"
elif command -v systemd-analyze >/dev/null; then
    cp "$UNIT" "$TMP/gatewayd.service"
    note=""
    if [ ! -x /usr/local/sbin/gatewayd ]; then
        # verify insists the ExecStart binary exists; check the unit, not the install.
        sed -i 's|/usr/local/sbin/gatewayd|/bin/true|g' "$TMP/gatewayd.service"
        note=" (gatewayd not installed: its path checked as /bin/true)"
    fi
    out=$(systemd-analyze verify "$TMP/gatewayd.service" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ -z "$out" ]; then
        ok "systemd-analyze verify $UNIT$note"
    else
        bad "systemd-analyze verify $UNIT (rc=$rc): $out"
    fi
else
    skp "systemd-analyze not found: $UNIT unchecked"
fi

GATEWAYD=""
for b in target/release/gatewayd target/debug/gatewayd target-*/release/gatewayd target-*/debug/gatewayd; do
    [ -x "$b" ] && { GATEWAYD=$b; break; }
done
# The vfio variant deploy/lab-gateway.sh derives from gatewayd.toml.
sed -e '/--vdev/d' \
    -e 's|^args = .*|args = ["-l", "0-1", "--file-prefix", "gw", "-a", "0000:00:08.0", "-a", "0000:00:09.0"]|' \
    -e 's|^inside = .*|inside = "0000:00:08.0"|' -e 's|^outside = .*|outside = "0000:00:09.0"|' \
    deploy/gatewayd.toml > "$TMP/gatewayd.vfio.toml"
for toml in deploy/*.toml "$TMP/gatewayd.vfio.toml"; do
    name=$toml
    [ "$toml" = "$TMP/gatewayd.vfio.toml" ] && name="vfio variant of deploy/gatewayd.toml (lab-gateway.sh)"
    if command -v python3 >/dev/null && python3 -c 'import tomllib' 2>/dev/null; then
        if out=$(python3 - "$toml" <<'PY' 2>&1
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
assert set(c) <= {"eal", "ports", "workers", "tuning"}, f"unknown sections {set(c)}"
assert isinstance(c["eal"]["args"], list) and all(isinstance(a, str) for a in c["eal"]["args"])
assert c["ports"]["inside"] and c["ports"]["outside"], "ports.inside/outside"
assert c["workers"] and all("lcore" in w for w in c["workers"]), "workers need an lcore"
PY
        ); then ok "TOML $name"; else bad "TOML $name: $out"; fi
    fi
    if [ -n "$GATEWAYD" ]; then
        if out=$("$GATEWAYD" --config "$toml" --check 2>&1); then
            ok "$GATEWAYD --check $name"
        else
            bad "$GATEWAYD --check $name: $out"
        fi
    fi
done
[ -n "$GATEWAYD" ] || skp "no gatewayd binary built: deploy configs not checked by gatewayd --check"

echo "check-lab: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
