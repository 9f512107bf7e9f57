#!/usr/bin/env bash
# lab-gateway.sh: runs gatewayd on the lab gateway VM's two virtio data NICs.
# Called by the Vagrantfile after tools/setup.sh (packages, build, hugepages).
#
#   GW_MODE=af_packet  DPDK's net_af_packet on the kernel interfaces (default;
#                      works under any hypervisor, slower: a copy per frame)
#   GW_MODE=vfio       the virtio PMD on the NICs themselves, bound to vfio-pci
#                      in no-IOMMU mode (a VM has no vIOMMU by default; this
#                      taints the kernel and is for labs only)
#
# The data NICs are found by MAC (INSIDE_MAC, OUTSIDE_MAC), not by name.
# Idempotent: `vagrant provision gateway` reruns it.
set -euo pipefail

GW_MODE=${GW_MODE:-af_packet}
GW_HUGEPAGES=${GW_HUGEPAGES:-512}
INSIDE_MAC=${INSIDE_MAC:?the inside NIC MAC}
OUTSIDE_MAC=${OUTSIDE_MAC:?the outside NIC MAC}
SRC=${GW_SRC:-/vagrant}
CONF=/etc/gatewayd/gatewayd.toml

log() { echo "lab-gateway: $*"; }
die() { echo "lab-gateway: $*" >&2; exit 1; }

iface_by_mac() {
    local mac=$1 dev
    for dev in /sys/class/net/*; do
        [ "$(cat "$dev/address" 2>/dev/null)" = "$mac" ] && { basename "$dev"; return 0; }
    done
    return 1
}

pci_of() { basename "$(readlink -f "/sys/class/net/$1/device")"; }

# 1. The gatewayd binary: built by tools/setup.sh, or built here.
install_binary() {
    local b
    for b in "$SRC/target/release/gatewayd" /usr/local/src/gateway/target/release/gatewayd \
             /var/tmp/gw-target/release/gatewayd; do
        if [ -x "$b" ]; then
            install -m 0755 "$b" /usr/local/sbin/gatewayd
            log "installed $b"
            return
        fi
    done
    command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || die "no gatewayd binary and no cargo: did tools/setup.sh run?"
    log "building gatewayd (release) in /var/tmp/gw-target"
    (cd "$SRC" && PATH="$HOME/.cargo/bin:$PATH" CARGO_TARGET_DIR=/var/tmp/gw-target \
        cargo build --release -p controlplane --bin gatewayd)
    install -m 0755 /var/tmp/gw-target/release/gatewayd /usr/local/sbin/gatewayd
}

# 2. Hugepages (tools/setup.sh reserves them too; this makes a rerun safe).
hugepages() {
    local f=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    [ "$(cat $f)" -ge "$GW_HUGEPAGES" ] || echo "$GW_HUGEPAGES" > $f
    log "hugepages: $(cat $f) x 2 MiB"
    mkdir -p /etc/default
    printf 'GATEWAYD_HUGEPAGES=%s\nGATEWAYD_ARGS=--stats-interval 10\n' "$GW_HUGEPAGES" > /etc/default/gatewayd
}

# 3. The data NICs and the config for the chosen mode.
configure() {
    local in out in_pci out_pci
    systemctl stop gatewayd 2>/dev/null || true
    mkdir -p /etc/gatewayd
    if [ "$GW_MODE" = af_packet ]; then
        in=$(iface_by_mac "$INSIDE_MAC") || die "no interface with MAC $INSIDE_MAC (after a vfio run: reboot the VM)"
        out=$(iface_by_mac "$OUTSIDE_MAC") || die "no interface with MAC $OUTSIDE_MAC"
        for d in "$in" "$out"; do
            ip addr flush dev "$d"
            ip link set dev "$d" up promisc on
            # Offloads would hand af_packet merged super-frames and defer checksums.
            ethtool -K "$d" gro off gso off tso off lro off rx off tx off 2>/dev/null || true
            # Keep the kernel from answering or routing on the data NICs.
            sysctl -qw "net.ipv6.conf.$d.disable_ipv6=1" || true
        done
        sed -e "s/iface=eth1/iface=$in/" -e "s/iface=eth2/iface=$out/" "$SRC/deploy/gatewayd.toml" > "$CONF"
        log "af_packet: inside=$in outside=$out"
    else
        in=$(iface_by_mac "$INSIDE_MAC") && in_pci=$(pci_of "$in") || in_pci=${GW_INSIDE_PCI:-}
        out=$(iface_by_mac "$OUTSIDE_MAC") && out_pci=$(pci_of "$out") || out_pci=${GW_OUTSIDE_PCI:-}
        [ -n "$in_pci" ] && [ -n "$out_pci" ] || die "cannot find the data NICs' PCI addresses (already bound? set GW_INSIDE_PCI/GW_OUTSIDE_PCI)"
        modprobe vfio enable_unsafe_noiommu_mode=1
        echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
        modprobe vfio-pci
        for d in ${in:-} ${out:-}; do ip link set dev "$d" down || true; done
        dpdk-devbind.py -b vfio-pci "$in_pci" "$out_pci"
        dpdk-devbind.py -s | sed -n '1,/^$/p'
        sed -e '/--vdev/d' \
            -e "s|^args = .*|args = [\"-l\", \"0-1\", \"--file-prefix\", \"gw\", \"-a\", \"$in_pci\", \"-a\", \"$out_pci\"]|" \
            -e "s|^inside = .*|inside = \"$in_pci\"|" -e "s|^outside = .*|outside = \"$out_pci\"|" \
            "$SRC/deploy/gatewayd.toml" > "$CONF"
        log "vfio (no-IOMMU): inside=$in_pci outside=$out_pci"
    fi
    # The lab VM has two vCPUs shared with the kernel: back off when idle.
    sed -i 's/^idle_backoff_us = 0.*/idle_backoff_us = 50   # lab VM: do not spin a shared vCPU/' "$CONF"
    chmod 0640 "$CONF"
    /usr/local/sbin/gatewayd --config "$CONF" --check
}

# 4. The service, and the example policy once gwctl exists.
start() {
    install -m 0644 "$SRC/deploy/gatewayd.service" /etc/systemd/system/gatewayd.service
    systemctl daemon-reload
    systemctl enable gatewayd
    systemctl restart gatewayd
    sleep 3
    systemctl is-active --quiet gatewayd || { journalctl -u gatewayd -n 50 --no-pager; die "gatewayd did not stay up"; }
    log "gatewayd is running ($(systemctl show -p MainPID --value gatewayd))"
    if command -v gwctl >/dev/null; then
        gwctl apply -f "$SRC/docs/examples/policy.yaml"
        log "applied docs/examples/policy.yaml"
    else
        log "gwctl not installed yet: the example policy is not applied (docs/lab.md)"
    fi
}

case "$GW_MODE" in af_packet|vfio) ;; *) die "GW_MODE must be af_packet or vfio" ;; esac
install_binary
hugepages
configure
start
