-- udp-request.lua: UDP requests toward a managed UDP network.
--
-- MEASURES  Forwarding rate of UDP datagrams from workloads toward a
--           managed UDP network: the path where the gateway runs its UDP
--           handshake (identity in UDP options) per flow and then forwards.
--           With few flows the handshake is amortised; raise GW_FLOWS to
--           stress handshake set-up (each new flow starts one).
-- PORTS     pktgen port 0 -> gateway INSIDE  (sends, as the workloads)
--           pktgen port 1 <- gateway OUTSIDE (receives the forwarded datagrams)
-- TRAFFIC   UDP from GW_FLOWS consecutive sources starting at GW_SRC_IP,
--           port 1024, to GW_DST_COUNT addresses from GW_DST_IP (the
--           managed UDP network) port GW_DST_PORT, at 64/512/1500 bytes.
-- READING   One "RESULT udp-<size> ..." line per size: rx_mpps forwarded.
--           Datagrams held back while a flow's handshake is pending, and
--           handshake packets the gateway itself sends, show up as
--           delivered != 100%: compare with the gateway's handshake
--           counters before calling it loss. Frames toward a managed
--           network may leave longer (UDP options): check pktgen's port-1
--           size counters.

package.path = package.path .. ";" .. (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua"
require "Pktgen"
local gw = require "gw_common"

local flows = gw.envnum("GW_FLOWS", 1024)
gw.banner(string.format("UDP requests toward a managed UDP network, %d flows", flows))

for s in gw.env("GW_SIZES", "64,512,1500"):gmatch("%d+") do
    local size = tonumber(s)
    gw.range(gw.INSIDE, {
        proto = "udp", size = size,
        src_ip = gw.env("GW_SRC_IP", "10.0.0.1"), flows = flows, src_port = 1024,
        dst_ip = gw.env("GW_DST_IP", "10.1.0.1"), dst_count = gw.envnum("GW_DST_COUNT", 1),
        dst_port = gw.envnum("GW_DST_PORT", 5001),
    })
    gw.measure(string.format("udp-%d", size), gw.INSIDE, { gw.OUTSIDE })
end

gw.finish()
