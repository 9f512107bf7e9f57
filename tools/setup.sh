#!/usr/bin/env bash
# Installs everything the gateway needs to build, run and be tested on a
# Debian 12 machine, and reserves hugepages. Safe to run again: it only does
# what is missing. The README's two commands, the CI and the Vagrant lab all
# start here, so this is the one list of dependencies.
#
#   GW_HUGEPAGES=N   2 MiB hugepages to reserve (default 512, i.e. 1 GiB; 0 skips)
set -euo pipefail

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, hugepages, namespaces): sudo $0"

PACKAGES=(
    # DPDK 22.11 and what bindgen needs to read its headers
    dpdk dpdk-dev libdpdk-dev pkg-config libclang-dev clang build-essential
    # namespaces, veth and the traffic the tests and demo send
    iproute2 ethtool iputils-ping curl netcat-openbsd socat tcpdump python3 python3-scapy apache2-utils dnsutils dnsmasq-base iptables
    # the benches read gatewayd's JSON counters; benches/cps.sh compares with
    # a Linux bridge filtering with nftables conntrack rules
    jq nftables
    # static checks of the lab files (Lua scripts, Vagrantfile: vagrant validate)
    lua5.4 ruby vagrant
    # protoc and its well-known types (google/protobuf/*.proto), for the gRPC
    # API (controlplane/build.rs) and etcd's API in fleet mode
    protobuf-compiler libprotobuf-dev
    # fleet mode: the fleet tests start their own etcd members (etcd-server)
    # and drive them with etcdctl (etcd-client)
    etcd-server etcd-client
    # observability: the tests scrape gatewayd with a real Prometheus and
    # receive its IPFIX export with nfdump's nfcapd; tshark decodes templates
    prometheus nfdump tshark
    # Pktgen-DPDK, built from source by tools/pktgen.sh for the pktgen lab
    # tests (tools/pktgen-lab.sh), which run it under `script` (bsdutils)
    meson ninja-build liblua5.3-dev libpcap-dev libnuma-dev bsdutils
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "packages: all present"
fi
pkg-config --atleast-version=22.11 libdpdk || die "libdpdk >= 22.11 not found after install"

# etcd-server, prometheus (and its node exporter) and nfdump enable and start
# machine-wide daemons on install (systemd, or their init.d scripts without
# it). The tests start their own on free ports; a stray one would only hold
# 2379, 9090 or a collector port: stop each, and keep it from coming back.
quiet_service() { # name
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        if systemctl is-enabled --quiet "$1.service" 2>/dev/null || systemctl is-active --quiet "$1.service"; then
            log "$1: stopping and disabling the packaged $1.service"
            systemctl disable --now "$1.service" >/dev/null 2>&1 || true
        fi
    elif [ -x "/etc/init.d/$1" ]; then
        if ls /etc/rc[2-5].d/S*"$1" >/dev/null 2>&1; then
            log "$1: disabling the packaged init script"
            update-rc.d "$1" disable >/dev/null 2>&1 || true
        fi
        if "/etc/init.d/$1" status >/dev/null 2>&1; then
            log "$1: stopping the packaged daemon"
            "/etc/init.d/$1" stop >/dev/null 2>&1 || true
        fi
    fi
    return 0
}
for svc in etcd prometheus prometheus-node-exporter nfdump; do quiet_service "$svc"; done
command -v etcd >/dev/null && command -v etcdctl >/dev/null || die "etcd/etcdctl not found after install"
for c in prometheus nfcapd nfdump tshark iptables; do command -v "$c" >/dev/null || die "$c not found after install"; done

# Rust: the machine's toolchain (rustup). Cargo may not be on root's PATH under sudo.
if ! command -v cargo >/dev/null; then
    for d in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
        [ -x "$d/cargo" ] && export PATH="$d:$PATH" && break
    done
fi
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup, 1.87 or newer)"
log "$(cargo --version), DPDK $(pkg-config --modversion libdpdk)"

# Hugepages: 2 MiB pages, and a hugetlbfs mount for the EAL to map them from.
want=${GW_HUGEPAGES:-512}
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ "$want" -gt 0 ] && [ -w "$nr" ]; then
    have=$(cat "$nr")
    if [ "$have" -lt "$want" ]; then
        echo "$want" > "$nr" || true
        have=$(cat "$nr")
    fi
    if ! grep -q '^[^ ]* /dev/hugepages hugetlbfs' /proc/mounts; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages || true
    fi
    if [ "$have" -ge 160 ] && grep -q hugetlbfs /proc/mounts; then
        log "hugepages: $have x 2 MiB reserved, hugetlbfs mounted"
    else
        log "hugepages: only $have reserved; gateways will run with --no-huge (about half as fast)"
    fi
else
    log "hugepages: skipped; gateways will run with --no-huge"
fi
