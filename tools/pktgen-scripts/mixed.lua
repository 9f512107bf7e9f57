-- mixed.lua: a mixed profile (established TCP, new SYNs, UDP requests).
--
-- MEASURES  Forwarding rate and delivery of a realistic blend: by default
--           8 established TCP segments : 1 new-connection SYN : 1 UDP
--           request, i.e. fast path, SYN signing and UDP handshake paths
--           interleaved, as a gateway sees them in production.
-- PORTS     pktgen port 0 -> gateway INSIDE  (sends the blend, from the pcap)
--           pktgen port 1 <- gateway OUTSIDE (receives)
-- TRAFFIC   Pktgen's range mode makes one protocol with one set of flags at
--           a time, so the blend is a scenario-gen pcap:
--             scenario-gen mixed --mix 8:1:1 --size 512 \
--                 --dst-net 10.1.0.0/24 -c 65536 -o mixed.pcap
--             pktgen -l 0-4 -n 4 -- -P -m "[1:2].0,[3:4].1" -s 0:mixed.pcap \
--                 -f tools/pktgen-scripts/mixed.lua
--           pktgen loads the whole file into mbufs and sends it in a loop;
--           keep it to tens of thousands of frames. The established
--           frames are admitted by the gateway's no-flow-state path (the
--           policy must allow their destination). Add --prelude-syn only
--           when the far side answers (a second gateway and a server): a
--           SYN nobody answers leaves its flow half-open, and the flow's
--           data is then dropped as out_of_state.
-- READING   "RESULT mixed ...": rx_mpps forwarded, delivered in percent.
--           SYNs grow by the identity option and UDP toward managed
--           networks may carry options, so compare packets, not bytes.
--           Without a pcap (GW_PCAP=0) the script falls back to two
--           pktgen-only steps, established TCP then UDP, at GW_SIZE.

package.path = package.path .. ";" .. (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua"
require "Pktgen"
local gw = require "gw_common"

gw.banner("mixed profile")

if gw.env("GW_PCAP", "1") ~= "0" then
    gw.pcap(gw.INSIDE)
    gw.measure("mixed", gw.INSIDE, { gw.OUTSIDE })
else
    local size = gw.envnum("GW_SIZE", 512)
    gw.tcp_flags("ack")
    for _, proto in ipairs({ "tcp", "udp" }) do
        gw.range(gw.INSIDE, {
            proto = proto, size = size,
            src_ip = gw.env("GW_SRC_IP", "10.0.0.1"), flows = gw.envnum("GW_FLOWS", 1024), src_port = 1024,
            dst_ip = gw.env("GW_DST_IP", "10.1.0.1"), dst_count = 16,
            dst_port = proto == "tcp" and 80 or 5001,
        })
        gw.measure("mixed-" .. proto .. "-" .. size, gw.INSIDE, { gw.OUTSIDE })
    end
end

gw.finish()
