-- tcp-established.lua: forwarding rate of established TCP through the gateway.
--
-- MEASURES  How many established-flow TCP segments per second the gateway
--           forwards from the inside to the outside, at 64, 512 and 1500
--           byte frames (FCS included), over GW_FLOWS flows. This is the
--           fast path: flow lookup, no identity work (the options live on
--           SYNs only).
-- PORTS     pktgen port 0 -> gateway INSIDE  (sends, as the workloads)
--           pktgen port 1 <- gateway OUTSIDE (receives what was forwarded)
-- TRAFFIC   ACK segments (pktgen's default flags) from GW_FLOWS consecutive
--           source addresses starting at GW_SRC_IP, port 1024, to GW_DST_IP:80.
--           The gateway admits these mid-stream flows through its
--           no-flow-state path when the policy allows the destination by
--           address (docs/examples/lab-pktgen.yaml: `servers-by-address`;
--           noted once per flow as no_flow_state_allowed), then forwards
--           each later segment on the established flow.
-- READING   One "RESULT tcp-est-<size> ..." line per size. rx_mpps is the
--           forwarded rate; delivered=100% at GW_RATE=100 means the gateway
--           keeps up with line rate (10GbE: 14.88 Mpps at 64 B, 2.35 Mpps
--           at 512 B, 0.82 Mpps at 1500 B). Below 100%, lower GW_RATE until
--           delivered >= 99.99% to find the no-drop rate, or set GW_NDR=1
--           and the script searches for it (binary search, 7 steps).
--
-- Run: pktgen -l 0-4 -n 4 -- -P -m "[1:2].0,[3:4].1" -f tools/pktgen-scripts/tcp-established.lua

package.path = package.path .. ";" .. (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua"
require "Pktgen"
local gw = require "gw_common"

local sizes = {}
for s in gw.env("GW_SIZES", "64,512,1500"):gmatch("%d+") do
    sizes[#sizes + 1] = tonumber(s)
end
local flows = gw.envnum("GW_FLOWS", 1024)

gw.banner(string.format("established TCP, %d flows, sizes %s", flows, table.concat(sizes, "/")))
gw.tcp_flags("ack")

local function step(size, rate)
    gw.range(gw.INSIDE, {
        proto = "tcp", size = size, rate = rate,
        src_ip = gw.env("GW_SRC_IP", "10.0.0.1"), flows = flows, src_port = 1024,
        dst_ip = gw.env("GW_DST_IP", "10.1.0.1"), dst_count = 1, dst_port = 80,
    })
    local r = gw.measure(string.format("tcp-est-%d@%s%%", size, rate), gw.INSIDE, { gw.OUTSIDE })
    return r[gw.OUTSIDE]
end

for _, size in ipairs(sizes) do
    if gw.env("GW_NDR", "") == "" then
        step(size, gw.RATE)
    else
        -- No-drop rate: the highest rate with >= GW_NDR_PCT delivered.
        local lo, hi, best = 0, 100, 0
        local want = gw.envnum("GW_NDR_PCT", 99.99)
        for _ = 1, 7 do
            local rate = (lo + hi) / 2
            if step(size, rate).delivered_pct >= want then
                lo, best = rate, rate
            else
                hi = rate
            end
        end
        print(string.format("RESULT tcp-est-%d NDR=%.2f%% of line rate (delivered >= %.2f%%)", size, best, want))
    end
end

gw.finish()
