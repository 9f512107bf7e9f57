#!/usr/bin/env bash
# Test topologies of network namespaces joined by veth pairs, with gatewayd on
# net_af_packet in between.
#
#   single:  [gwt-client] eth0 ── out0 [gwt-gw] in0 ── eth0 [gwt-server]
#   double:  [gwt-client] eth0 ── in0 [gwt-a] out0 ══ wire ══ out0 [gwt-b] in0 ── eth0 [gwt-server]
#   double-ext: as double, but the wire is a bridge (br0 in gwt-wire, ports wa/wb/wx)
#            that also joins [gwt-ext] eth0 (198.18.0.3, fd00:2544::3): a host
#            with no gateway in front of it, on the network side of gateway B.
#   fleet:   three gateways on one wire (br0 in gwt-wire, ports wa/wb/wc), each
#            with a workload behind it:
#              [gwt-client]   eth0 ── in0 [gwt-a] out0 ══╗
#              [gwt-server]   eth0 ── in0 [gwt-b] out0 ══╬══ br0 [gwt-wire]
#              [gwt-client-c] eth0 ── in0 [gwt-c] out0 ══╝
#            plus a management network, as an appliance's management port:
#            each gateway's mgmt0 (10.254.0.11/.12/.13 for a/b/c) is a veth into
#            the root namespace, whose ends (gwm-a/b/c) join the bridge gwmgmt
#            there (10.254.0.1/24): a gatewayd in gwt-a reaches an etcd
#            listening on 10.254.0.1 in the root namespace.
#   pktgen:  a load generator's two ports facing one gateway (tools/pktgen-lab.sh):
#              [gwt-pktgen] p0 ── in0 [gwt-gw] out0 ── p1 [gwt-pktgen]
#            pktgen's port 0 (p0) is the workloads' side, port 1 (p1) the
#            network's; no addresses anywhere, pktgen writes whole frames.
#
# In "single" the server is the workload behind the gateway (inside); in
# "double" the client sits behind gateway A and the server behind gateway B.
# Addresses come from the benchmarking range RFC 2544 sets aside
# (198.18.0.0/15) and a ULA prefix, and exist only inside these namespaces.
#
# usage: topology.sh up single|double|double-ext|fleet|pktgen
#        topology.sh down
#        topology.sh config NS [workers] [extra toml...]   (prints a gatewayd.toml for gateway NS)
#        topology.sh status
set -euo pipefail

CLIENT=gwt-client SERVER=gwt-server
CLIENT_V4=198.18.0.1 SERVER_V4=198.18.0.2
CLIENT_V6=fd00:2544::1 SERVER_V6=fd00:2544::2
CLIENT_C=gwt-client-c CLIENT_C_V4=198.18.0.4 CLIENT_C_V6=fd00:2544::4
ALL_NS=(gwt-client gwt-server gwt-gw gwt-a gwt-b gwt-wire gwt-ext gwt-c gwt-client-c gwt-pktgen)
# The fleet topology's management network, in the root namespace.
MGMT_BR=gwmgmt MGMT_HOST=10.254.0.1
MGMT_GW=(gwt-a:gwm-a:10.254.0.11 gwt-b:gwm-b:10.254.0.12 gwt-c:gwm-c:10.254.0.13)

die() { echo "topology: $*" >&2; exit 1; }

# By exact name: grep -w would take gwt-client-c for gwt-client.
ns_exists() { ip netns list | awk -v n="$1" '$1 == n { f = 1 } END { exit !f }'; }

# af_packet sees what the kernel hands it: offloaded checksums would reach the
# other side unfilled and GSO/GRO would hand it 64 KiB super-frames. Turn
# every offload off on both ends of every veth.
no_offloads() { # ns dev
    ip netns exec "$1" ethtool -K "$2" rx off tx off tso off gso off gro off sg off >/dev/null 2>&1 || true
    ip netns exec "$1" ethtool -K "$2" lro off rx-vlan-offload off tx-vlan-offload off >/dev/null 2>&1 || true
}

# A gateway's ports carry no address; keep the kernel there from talking (IPv6 DAD, RS).
quiet_port() { # ns dev
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1" >/dev/null
    ip -n "$1" link set "$2" up
    no_offloads "$1" "$2"
}

host_end() { # ns dev v4 v6
    ip -n "$1" addr add "$3/24" dev "$2"
    ip -n "$1" addr add "$4/64" dev "$2" nodad
    ip -n "$1" link set "$2" up
    ip -n "$1" link set lo up
    no_offloads "$1" "$2"
}

link_pair() { # ns1 dev1 ns2 dev2
    ip link add "tmp-$$-a" type veth peer name "tmp-$$-b"
    ip link set "tmp-$$-a" netns "$1"
    ip link set "tmp-$$-b" netns "$3"
    ip -n "$1" link set "tmp-$$-a" name "$2"
    ip -n "$3" link set "tmp-$$-b" name "$4"
}

up() {
    command -v ethtool >/dev/null || die "ethtool is missing (tools/setup.sh installs it)"
    down
    case "${1:-}" in
    single)
        for ns in $CLIENT $SERVER gwt-gw; do ip netns add $ns; done
        link_pair $CLIENT eth0 gwt-gw out0
        link_pair $SERVER eth0 gwt-gw in0
        quiet_port gwt-gw out0; quiet_port gwt-gw in0
        ;;
    double)
        for ns in $CLIENT $SERVER gwt-a gwt-b; do ip netns add $ns; done
        link_pair $CLIENT eth0 gwt-a in0
        link_pair gwt-a out0 gwt-b out0
        link_pair $SERVER eth0 gwt-b in0
        for ns in gwt-a gwt-b; do quiet_port $ns in0; quiet_port $ns out0; done
        ;;
    double-ext)
        for ns in $CLIENT $SERVER gwt-a gwt-b gwt-wire gwt-ext; do ip netns add $ns; done
        link_pair $CLIENT eth0 gwt-a in0
        link_pair gwt-a out0 gwt-wire wa
        link_pair gwt-b out0 gwt-wire wb
        link_pair gwt-ext eth0 gwt-wire wx
        link_pair $SERVER eth0 gwt-b in0
        for ns in gwt-a gwt-b; do quiet_port $ns in0; quiet_port $ns out0; done
        ip -n gwt-wire link add br0 type bridge stp_state 0 forward_delay 0
        for p in wa wb wx; do quiet_port gwt-wire $p; ip -n gwt-wire link set $p master br0; done
        ip netns exec gwt-wire sysctl -qw net.ipv6.conf.br0.disable_ipv6=1 >/dev/null
        ip -n gwt-wire link set br0 up
        host_end gwt-ext eth0 198.18.0.3 fd00:2544::3
        ;;
    fleet)
        for ns in $CLIENT $SERVER $CLIENT_C gwt-a gwt-b gwt-c gwt-wire; do ip netns add $ns; done
        link_pair $CLIENT eth0 gwt-a in0
        link_pair $SERVER eth0 gwt-b in0
        link_pair $CLIENT_C eth0 gwt-c in0
        link_pair gwt-a out0 gwt-wire wa
        link_pair gwt-b out0 gwt-wire wb
        link_pair gwt-c out0 gwt-wire wc
        for ns in gwt-a gwt-b gwt-c; do quiet_port $ns in0; quiet_port $ns out0; done
        ip -n gwt-wire link add br0 type bridge stp_state 0 forward_delay 0
        for p in wa wb wc; do quiet_port gwt-wire $p; ip -n gwt-wire link set $p master br0; done
        ip netns exec gwt-wire sysctl -qw net.ipv6.conf.br0.disable_ipv6=1 >/dev/null
        ip -n gwt-wire link set br0 up
        host_end $CLIENT_C eth0 $CLIENT_C_V4 $CLIENT_C_V6
        mgmt_up
        ;;
    pktgen)
        for ns in gwt-pktgen gwt-gw; do ip netns add $ns; done
        link_pair gwt-pktgen p0 gwt-gw in0
        link_pair gwt-pktgen p1 gwt-gw out0
        for dev in p0 p1; do quiet_port gwt-pktgen $dev; done
        quiet_port gwt-gw in0; quiet_port gwt-gw out0
        echo "topology: pktgen is up (gwt-pktgen p0 -- in0 gwt-gw out0 -- p1 gwt-pktgen)"
        return
        ;;
    *) die "up takes single, double, double-ext, fleet or pktgen" ;;
    esac
    host_end $CLIENT eth0 $CLIENT_V4 $CLIENT_V6
    host_end $SERVER eth0 $SERVER_V4 $SERVER_V6
    echo "topology: $1 is up (client $CLIENT_V4 / $CLIENT_V6, server $SERVER_V4 / $SERVER_V6)"
    if [ "$1" = fleet ]; then
        echo "topology: client-c $CLIENT_C_V4 / $CLIENT_C_V6; management $MGMT_HOST on $MGMT_BR (gateways .11 .12 .13 on mgmt0)"
    fi
}

# The fleet's management network: a bridge in the root namespace and a veth
# from each gateway namespace onto it. IPv4 only, so the kernel stays quiet.
mgmt_up() {
    local spec ns dev addr
    ip link add $MGMT_BR type bridge stp_state 0 forward_delay 0
    sysctl -qw "net.ipv6.conf.$MGMT_BR.disable_ipv6=1" >/dev/null
    ip addr add $MGMT_HOST/24 dev $MGMT_BR
    ip link set $MGMT_BR up
    for spec in "${MGMT_GW[@]}"; do
        IFS=: read -r ns dev addr <<<"$spec"
        ip link add "$dev" type veth peer name mgmt0 netns "$ns"
        sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" >/dev/null
        ip link set "$dev" master $MGMT_BR up
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.mgmt0.disable_ipv6=1 >/dev/null
        ip -n "$ns" addr add "$addr/24" dev mgmt0
        ip -n "$ns" link set mgmt0 up
        ip -n "$ns" link set lo up
    done
}

down() {
    local spec ns dev addr
    for ns in "${ALL_NS[@]}"; do
        if ns_exists "$ns"; then
            # Stop anything still running in it (a gateway, a server).
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    # A veth goes when its namespace is freed, which a process that has not
    # exited yet delays: remove the root ends and the bridge by name.
    for spec in "${MGMT_GW[@]}"; do
        IFS=: read -r ns dev addr <<<"$spec"
        ip link del "$dev" 2>/dev/null || true
    done
    ip link del $MGMT_BR 2>/dev/null || true
}

# EAL memory: hugepages when enough are free, else --no-huge (about half as
# fast; it implies legacy memory, which --in-memory refuses).
eal_memory() {
    local free
    free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
    if [ "${GW_NO_HUGE:-0}" != 1 ] && [ "${free:-0}" -ge 160 ] && grep -q hugetlbfs /proc/mounts; then
        echo '"-m", "256", "--in-memory"'
    else
        echo '"--no-huge", "-m", "256"'
    fi
}

config() { # ns [workers] [extra toml lines]
    local ns=$1 workers=${2:-1}; shift 2 || shift $#
    [ "$workers" -ge 1 ] || die "workers must be >= 1"
    # Worker i runs on CPU (GW_WORKER_CPU + i - 1) mod nproc (default: 1, 2, ...).
    local lcores="0@0" i first=${GW_WORKER_CPU:-1}
    for ((i = 1; i <= workers; i++)); do lcores+=",$i@$(( (first + i - 1) % $(nproc) ))"; done
    cat <<TOML
# gatewayd for namespace $ns (generated by tools/topology.sh)
[eal]
args = ["--lcores", "$lcores", "--no-pci", "--file-prefix", "$ns", $(eal_memory),
        "--log-level", "*:warning",
        "--vdev", "net_af_packet0,iface=in0,qpairs=$workers",
        "--vdev", "net_af_packet1,iface=out0,qpairs=$workers"]
[ports]
inside = "net_af_packet0"
outside = "net_af_packet1"
rx_desc = 512
tx_desc = 512
TOML
    for ((i = 1; i <= workers; i++)); do printf '[[workers]]\nlcore = %d\n' "$i"; done
    # Several gateways and test tools share two CPUs here: yield when idle.
    printf '[tuning]\nburst = 32\nidle_backoff_us = %s\n' "${GW_IDLE_BACKOFF_US:-20}"
    for line in "$@"; do echo "$line"; done
}

status() {
    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" || continue
        echo "== $ns"; ip -n "$ns" -br addr
    done
    if ip link show $MGMT_BR >/dev/null 2>&1; then
        echo "== root ($MGMT_BR)"; ip -br addr show $MGMT_BR; ip -br link show master $MGMT_BR
    fi
}

[ "$(id -u)" = 0 ] || die "must run as root (namespaces, veth)"
cmd=${1:-}; shift || true
case "$cmd" in
up) up "$@" ;;
down) down ;;
config) config "$@" ;;
status) status ;;
*) sed -n '2,33p' "$0"; exit 2 ;;
esac
