-- syn-flood.lua: the gateway's SYN path under a flood from the inside.
--
-- MEASURES  How many new-connection SYNs per second the gateway can take
--           from workloads, look up in policy, sign (add the identity TCP
--           option) and forward. Every SYN is a new flow, so this also
--           loads flow-table insertion.
-- PORTS     pktgen port 0 -> gateway INSIDE  (sends SYNs, as the workloads)
--           pktgen port 1 <- gateway OUTSIDE (receives the signed SYNs)
-- TRAFFIC   TCP SYN (no options: pktgen cannot craft options; see below),
--           sources GW_SRC_IP + GW_FLOWS addresses x ports 1024..65535
--           (incremented together: a new tuple per packet for a long while),
--           toward GW_DST_COUNT addresses from GW_DST_IP (the managed
--           network), port GW_DST_PORT. Size 64 B.
--           The SYN flag is set through syn-flags.pkt (22.x/23.x have no Lua
--           call for TCP flags) and restored to ACK at the end.
--           SYNs with real OS option layouts: generate them with
--             scenario-gen syn-flood --os linux|windows|macos -c 65536 -o syn.pcap
--           start pktgen with `-s 0:syn.pcap` and set GW_PCAP=1.
-- READING   "RESULT syn-flood ..." : rx_mpps is signed SYNs forwarded per
--           second (in millions). delivered < 100% means SYNs were dropped:
--           by policy (expected if the sources are not allowed; check the
--           gateway's per-reason drop counters) or for lack of capacity.
--           Frames leave the gateway 20 bytes longer (the identity option);
--           check pktgen's port-1 size counters (page stats) to confirm
--           the option was added.
--
-- Run: pktgen -l 0-4 -n 4 -- -P -m "[1:2].0,[3:4].1" -f tools/pktgen-scripts/syn-flood.lua

package.path = package.path .. ";" .. (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua"
require "Pktgen"
local gw = require "gw_common"

local flows = gw.envnum("GW_FLOWS", 65534) -- 10.0.0.1 .. 10.0.255.254
gw.banner(string.format("SYN flood from the inside, %d sources", flows))

if gw.env("GW_PCAP", "") ~= "" then
    gw.pcap(gw.INSIDE)
else
    gw.range(gw.INSIDE, {
        proto = "tcp", size = 64,
        src_ip = gw.env("GW_SRC_IP", "10.0.0.1"), flows = flows,
        src_port = 1024, src_ports = 64512,
        dst_ip = gw.env("GW_DST_IP", "10.1.0.1"), dst_count = gw.envnum("GW_DST_COUNT", 254),
        dst_port = gw.envnum("GW_DST_PORT", 80),
    })
    gw.tcp_flags("syn")
end

gw.measure("syn-flood", gw.INSIDE, { gw.OUTSIDE })

if gw.env("GW_PCAP", "") == "" then
    gw.tcp_flags("ack")
end
gw.finish()
