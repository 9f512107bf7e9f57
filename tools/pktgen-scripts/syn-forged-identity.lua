-- syn-forged-identity.lua: the verify path under attack.
--
-- MEASURES  Two things at once, while the network side floods the gateway
--           with SYNs that carry identity options which do not verify
--           (right kind, length and ExID; random key id, identity and MAC):
--           1. leakage: forged SYNs that reach the inside (must be 0);
--           2. collateral: loss of legitimate established traffic sent
--              from the inside at the same time (should stay 0).
--           The drop rate itself is read from the gateway's counters
--           (the verify-failure drop reason), not from pktgen.
-- PORTS     pktgen port 1 -> gateway OUTSIDE (sends the forged SYNs, from the pcap)
--           pktgen port 0 <- gateway INSIDE  (counts leaked SYNs)
--           pktgen port 0 -> gateway INSIDE  (legitimate background, GW_LEGIT_RATE %)
--           pktgen port 1 <- gateway OUTSIDE (receives the background)
-- TRAFFIC   Pktgen cannot craft TCP options, so the forged SYNs come from a
--           pcap written by scenario-gen and loaded with pktgen's -s flag:
--             scenario-gen syn-flood --forge-identity --src-net 10.1.0.0/24 \
--                 --dst-net 10.0.0.0/24 --dst-port 80 -c 65536 -o forged.pcap
--           (--forge-identity: random key id, refused on the key lookup;
--           --forge-option 253:20:4d4910000201 instead names the peer's
--           real key id, 2 toward 1 with docs/examples/lab-pktgen.yaml, so
--           every SYN costs the gateway an HMAC and fails on its MAC: the
--           costlier attack, which tools/pktgen-lab.sh replays)
--             pktgen -l 0-4 -n 4 -- -P -m "[1:2].0,[3:4].1" -s 1:forged.pcap \
--                 -f tools/pktgen-scripts/syn-forged-identity.lua
--           (sources on the network side, destinations in the workloads'
--           network: the direction in which the gateway verifies).
--           This script does the rest: pcap mode on port 1 at GW_RATE,
--           range-mode ACKs on port 0 at GW_LEGIT_RATE.
-- READING   "RESULT forged-syn ... rx_port=0 rx=N": N forged SYNs leaked
--           (anything but 0 is a bug); tx counts the flood. "RESULT legit-under-flood ...
--           delivered=..%": the background's delivery; compare with a run
--           of tcp-established.lua at the same rate.

package.path = package.path .. ";" .. (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua"
require "Pktgen"
local gw = require "gw_common"

local legit_rate = gw.envnum("GW_LEGIT_RATE", 10)
gw.banner(string.format("forged identity SYN flood from the outside (pcap on port %s) + %s%% legitimate from the inside",
    gw.OUTSIDE, legit_rate))

gw.pcap(gw.OUTSIDE, gw.RATE)
gw.tcp_flags("ack")
gw.range(gw.INSIDE, {
    proto = "tcp", size = gw.envnum("GW_LEGIT_SIZE", 64), rate = legit_rate,
    src_ip = gw.env("GW_SRC_IP", "10.0.0.1"), flows = gw.envnum("GW_FLOWS", 1024), src_port = 1024,
    dst_ip = gw.env("GW_DST_IP", "10.1.0.1"), dst_count = 1, dst_port = 80,
})

-- The flood alone first: leakage without background traffic.
gw.measure("forged-syn", gw.OUTSIDE, { gw.INSIDE })
-- Then both: the background's delivery while the flood runs.
gw.measure("legit-under-flood", gw.INSIDE, { gw.OUTSIDE }, nil, { gw.OUTSIDE })

gw.finish()
