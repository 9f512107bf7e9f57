-- gw_common.lua: helpers shared by the gateway's Pktgen-DPDK scripts.
--
-- Target: Pktgen-DPDK 22.07 .. 23.10 (the releases built against DPDK 22.11),
-- Lua API `require "Pktgen"`; run against 23.06.1 by tools/pktgen-lab.sh.
-- Everything tunable comes from environment variables (see README.md), so
-- the scripts run unedited on any rig.
--
-- Cabling convention used by every script:
--   pktgen port GW_INSIDE_PORT  (default 0) <-> gateway INSIDE port  (workloads side)
--   pktgen port GW_OUTSIDE_PORT (default 1) <-> gateway OUTSIDE port (network side)

local M = {}

-- Directory of this file, so sibling .pkt files are found wherever pktgen runs.
M.dir = (function()
    local src = debug.getinfo(1, "S").source
    if src:sub(1, 1) == "@" then
        return src:sub(2):match("(.*/)") or "./"
    end
    return "./"
end)()

function M.env(name, default)
    local v = os.getenv(name)
    if v == nil or v == "" then
        return default
    end
    return v
end

function M.envnum(name, default)
    return tonumber(os.getenv(name) or "") or default
end

M.INSIDE = M.env("GW_INSIDE_PORT", "0")
M.OUTSIDE = M.env("GW_OUTSIDE_PORT", "1")
M.DURATION_MS = M.envnum("GW_DURATION_MS", 10000)
M.RATE = M.envnum("GW_RATE", 100) -- percent of line rate
M.BURST = M.envnum("GW_BURST", 64)
M.SRC_MAC = M.env("GW_SRC_MAC", "02:00:00:00:00:01")
M.DST_MAC = M.env("GW_DST_MAC", "02:00:00:00:00:02")
M.RESULT_CSV = M.env("GW_RESULT_CSV", "")
-- Pktgen refreshes the counters portStats returns once a second (a timer
-- thread): wait this long after the last frame before reading them.
M.SETTLE_MS = M.envnum("GW_SETTLE_MS", 1500)

-- Pktgen's major version (22, 23, 24 ...), 0 if unknown.
function M.pktgen_major()
    local v = (pktgen.info and pktgen.info.Pktgen_Version) or ""
    return tonumber(tostring(v):match("(%d+)%.")) or 0
end

-- IPv4 dotted quad + n, wrapping inside 32 bits.
function M.ip4_add(ip, n)
    local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    assert(a, "not an IPv4 address: " .. tostring(ip))
    local v = ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
    v = (v + n) % 4294967296
    return string.format("%d.%d.%d.%d", v // 16777216, (v // 65536) % 256, (v // 256) % 256, v % 256)
end

-- Runs a pktgen command file (.pkt) that sits next to these scripts.
-- pktgen.load(path) runs it through pktgen's command-file reader. The
-- documented pktgen.run("cmd", path) refuses two arguments in 23.06.1
-- (lpktgenlib.c checks for three), so it is only the fallback.
function M.run_cmd_file(name)
    local path = M.dir .. name
    local ok, err = pcall(pktgen.load, path)
    if not ok then
        ok, err = pcall(pktgen.run, "cmd", path)
    end
    if not ok then
        error("cannot run pktgen command file " .. path .. ": " .. tostring(err))
    end
end

-- Range-mode TCP flags on the inside port. Pktgen's default is ACK; the
-- 22.x/23.x Lua API has no call for flags, hence the .pkt files. The .pkt
-- files name port 0: SYN scenarios always send from the inside port 0.
function M.tcp_flags(which)
    assert(which == "syn" or which == "ack")
    assert(M.INSIDE == "0", "the .pkt flag files address port 0; cable the inside to pktgen port 0")
    if M.pktgen_major() >= 24 then
        M.run_cmd_file(which .. "-flags-24.pkt")
    else
        M.run_cmd_file(which .. "-flags.pkt")
    end
end

local function smmi(fn, port, start, min, max, inc)
    fn(port, "start", start)
    fn(port, "min", min)
    fn(port, "max", max)
    fn(port, "inc", inc)
end

-- Range mode over `p.flows` source addresses (one flow per address, fixed
-- source port unless p.src_ports > 1) toward `p.dst_count` destinations.
-- p = { proto = "tcp"|"udp", size = 64, src_ip = "10.0.0.1", flows = 1024,
--       src_port = 1024, src_ports = 1, dst_ip = "10.1.0.1", dst_count = 1,
--       dst_port = 80, rate = 100 }
function M.range(port, p)
    local r = pktgen.range
    -- Pktgen 22.x/23.x pace range mode by the single-packet size (see
    -- pktgen_wire_size), not the range's: set both, or 1500-byte frames
    -- would go out at the packet rate of 64-byte ones.
    pktgen.set(port, "size", p.size)
    pktgen.set(port, "count", 0) -- 0 = until stopped
    pktgen.set(port, "burst", M.BURST)
    smmi(r.src_mac, port, M.SRC_MAC, M.SRC_MAC, M.SRC_MAC, "00:00:00:00:00:00")
    smmi(r.dst_mac, port, M.DST_MAC, M.DST_MAC, M.DST_MAC, "00:00:00:00:00:00")
    r.ip_proto(port, p.proto)
    local last_src = M.ip4_add(p.src_ip, (p.flows or 1) - 1)
    smmi(r.src_ip, port, p.src_ip, p.src_ip, last_src, "0.0.0.1")
    local sp_last = p.src_port + (p.src_ports or 1) - 1
    smmi(r.src_port, port, p.src_port, p.src_port, sp_last, (p.src_ports or 1) > 1 and 1 or 0)
    local last_dst = M.ip4_add(p.dst_ip, (p.dst_count or 1) - 1)
    smmi(r.dst_ip, port, p.dst_ip, p.dst_ip, last_dst, (p.dst_count or 1) > 1 and "0.0.0.1" or "0.0.0.0")
    smmi(r.dst_port, port, p.dst_port, p.dst_port, p.dst_port, 0)
    smmi(r.pkt_size, port, p.size, p.size, p.size, 0)
    pktgen.set_range(port, "on")
    pktgen.set(port, "rate", p.rate or M.RATE) -- last: the pacing is computed here
end

-- Replays the pcap loaded with pktgen's `-s <port>:<file.pcap>` on `port`.
-- Without one, pktgen.pcap(port, "on") does nothing and the port would send
-- its single packet: GW_PCAP_PORTS (set by tools/pktgen-lab.sh, e.g. "1")
-- names the ports given a pcap, and a port missing from it is an error.
function M.pcap(port, rate)
    local loaded = M.env("GW_PCAP_PORTS", nil)
    if loaded and not (("," .. loaded .. ","):find("," .. port .. ",", 1, true)) then
        error("port " .. port .. " has no pcap: start pktgen with -s " .. port .. ":<file.pcap>")
    end
    pktgen.set(port, "count", 0)
    pktgen.set(port, "burst", M.BURST)
    pktgen.set_range(port, "off")
    pktgen.pcap(port, "on")
    pktgen.set(port, "rate", rate or M.RATE) -- after pcap mode: paced by the pcap's mean size
end

local function stats(port, kind)
    return pktgen.portStats(port, kind)[tonumber(port)]
end

local function csv(line)
    if M.RESULT_CSV == "" then
        return
    end
    local f = io.open(M.RESULT_CSV, "a")
    if f then
        f:write(line, "\n")
        f:close()
    end
end

-- Frames each port has sent and received since pktgen started, per port.
-- Never cleared (no pktgen.clr()): the steps of a script are differences of
-- these, and their totals are what the gateway's port counters must match.
local function counts(ports)
    local c = {}
    for _, p in ipairs(ports) do
        local s = stats(p, "port")
        c[p] = { tx = s.opackets, rx = s.ipackets }
    end
    return c
end

-- Sends on `tx` for `ms` milliseconds, printing per-second rates of tx and
-- every port in `rx` (a list), then one RESULT line per rx port:
--   RESULT <label> tx=<sent> rx_port=<p> rx=<received> delivered=<pct> rx_mpps=<avg>
-- Extra ports in `also` are started and stopped with tx (background load).
function M.measure(label, tx, rx, ms, also)
    ms = ms or M.DURATION_MS
    also = also or {}
    local ports = { tx }
    for _, p in ipairs(rx) do
        ports[#ports + 1] = p
    end
    local before = counts(ports)
    for _, p in ipairs(also) do
        pktgen.start(p)
    end
    pktgen.start(tx)
    local t = 0
    while t < ms do
        local step = math.min(1000, ms - t)
        pktgen.delay(step)
        t = t + step
        local line = string.format("%s t=%.1fs tx[%s]=%.3f Mpps", label, t / 1000, tx, stats(tx, "rate").pkts_tx / 1e6)
        for _, p in ipairs(rx) do
            line = line .. string.format(" rx[%s]=%.3f Mpps", p, stats(p, "rate").pkts_rx / 1e6)
        end
        print(line)
    end
    pktgen.stop(tx)
    for _, p in ipairs(also) do
        pktgen.stop(p)
    end
    pktgen.delay(M.SETTLE_MS) -- the gateway drains its queues, pktgen refreshes its counters
    local after = counts(ports)
    local sent = after[tx].tx - before[tx].tx
    local results = {}
    for _, p in ipairs(rx) do
        local got = after[p].rx - before[p].rx
        local pct = sent > 0 and 100.0 * got / sent or 0.0
        local mpps = got / (ms / 1000) / 1e6
        print(string.format("RESULT %s tx=%d rx_port=%s rx=%d delivered=%.3f%% rx_mpps=%.3f", label, sent, p, got, pct, mpps))
        csv(string.format("%s,%s,%d,%s,%d,%.3f,%.3f", os.date("!%Y-%m-%dT%H:%M:%SZ"), label, sent, p, got, pct, mpps))
        results[p] = { sent = sent, received = got, delivered_pct = pct, rx_mpps = mpps }
    end
    return results
end

function M.banner(text)
    -- GW_SCREEN=off: no screen updates (a log of the run keeps only what
    -- the script prints).
    if M.env("GW_SCREEN", "on") == "off" then
        pktgen.screen("off")
    end
    print(string.rep("=", 72))
    print(text)
    print(string.format("pktgen %s; inside=port %s outside=port %s; %d ms per step; rate %s%%",
        tostring(pktgen.info and pktgen.info.Pktgen_Version), M.INSIDE, M.OUTSIDE, M.DURATION_MS, tostring(M.RATE)))
    print(string.rep("=", 72))
end

-- Prints every port's totals since pktgen started, one line each:
--   PORT <p> tx=<sent> rx=<received> missed=<imissed> rx_errors=<n> tx_errors=<n> rx_nombuf=<n>
-- then runs GW_AT_END (a shell command, run while pktgen still holds its
-- ports: tools/pktgen-lab.sh reads af_packet's drop counters there), and
-- quits pktgen unless GW_NO_QUIT is set (keep the console for inspection).
function M.finish()
    local all = pktgen.portStats("all", "port")
    for p = 0, all.n - 1 do
        local s = all[p]
        print(string.format("PORT %d tx=%d rx=%d missed=%d rx_errors=%d tx_errors=%d rx_nombuf=%d",
            p, s.opackets, s.ipackets, s.imissed, s.ierrors, s.oerrors, s.rx_nombuf))
    end
    local hook = M.env("GW_AT_END", "")
    if hook ~= "" then
        os.execute(hook)
    end
    if M.env("GW_NO_QUIT", "") == "" then
        pktgen.quit()
    end
end

return M
