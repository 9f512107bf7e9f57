-- pktgen_stub.lua: a stand-in for Pktgen-DPDK's Lua library, to run the
-- scripts with plain `lua5.4` where no pktgen exists (Debian has no package).
--
-- The scripts run against the real pktgen 23.06.1 in the lab
-- (tools/pktgen-lab.sh, controlplane/tests/e2e_pktgen.rs). This stub is
-- kept for what that cannot reach: the 24.10 branch (the -24.pkt flag
-- files), which tools/check-lab.sh runs it as, on any machine.
--
-- It knows exactly the names registered by lpktgenlib.c in the 22.x/23.x
-- releases that these scripts use (plus those around them), checks argument
-- counts the way pktgen does, and fails on any other name, so a typo or a
-- call from a newer API fails here instead of on the test rig. It also
-- reproduces pktgen.run's three-argument check (23.06.1 has it).
--
-- Usage: lua5.4 test/pktgen_stub.lua <script.lua>   (prints the calls made)

local script = assert(arg[1], "usage: lua5.4 pktgen_stub.lua <script.lua>")
local calls = 0

local function fn(name, nargs)
    return function(...)
        local n = select("#", ...)
        if nargs and n ~= nargs then
            error(string.format("pktgen.%s: %d arguments, pktgen wants %d", name, n, nargs), 2)
        end
        calls = calls + 1
        local parts = {}
        for i = 1, n do
            parts[#parts + 1] = tostring((select(i, ...)))
        end
        io.write(string.format("  pktgen.%s(%s)\n", name, table.concat(parts, ", ")))
    end
end

local function ports(list)
    local t = { n = 0 }
    if list == "all" then
        list = "0,1"
    end
    for p in tostring(list):gmatch("%d+") do
        t[tonumber(p)] = {
            ipackets = 1000, opackets = 1000, ibytes = 64000, obytes = 64000,
            ierrors = 0, oerrors = 0, rx_nombuf = 0, imissed = 0,
            pkts_rx = 14880000, pkts_tx = 14880000, mbits_rx = 10000, mbits_tx = 10000,
        }
        t.n = t.n + 1
    end
    return t
end

local lib = {
    quit = fn("quit", 0), set = fn("set", 3), start = fn("start", 1), stop = fn("stop", 1),
    set_mac = fn("set_mac", 3), set_ipaddr = fn("set_ipaddr", 3), set_proto = fn("set_proto", 2),
    set_type = fn("set_type", 2), pcap = fn("pcap", 2), delay = fn("delay", 1), sleep = fn("sleep", 1),
    pause = fn("pause", 2), load = fn("load", 1), clear = fn("clear", 1), clr = fn("clr", 0),
    cls = fn("cls", 0), reset = fn("reset", 1), set_range = fn("set_range", 2), page = fn("page", 1),
    screen = fn("screen", 1), latency = fn("latency", 2),
    run = fn("run", 3), -- some releases: `case 3:` although the help says two arguments
    portStats = function(list, kind)
        assert(kind == "port" or kind == "rate", "portStats kind must be port or rate")
        calls = calls + 1
        return ports(list)
    end,
    info = { Pktgen_Version = os.getenv("STUB_PKTGEN_VERSION") or "Pktgen 24.10.0" },
    range = {},
}
for _, name in ipairs({ "dst_mac", "src_mac", "src_ip", "dst_ip", "src_port", "dst_port",
    "vlan_id", "pkt_size", "cos", "tos", "ttl" }) do
    lib.range[name] = fn("range." .. name, 3)
end
lib.range.ip_proto = fn("range.ip_proto", 2)

local function strict(t, what)
    return setmetatable(t, {
        __index = function(_, k)
            error(string.format("%s.%s does not exist in the Pktgen 22.x/23.x Lua API", what, tostring(k)), 2)
        end,
    })
end
strict(lib.range, "pktgen.range")
pktgen = strict(lib, "pktgen")
package.preload["Pktgen"] = function() return pktgen end

print("== " .. script)
dofile(script)
print(string.format("== %s: %d pktgen calls, ok", script, calls))
