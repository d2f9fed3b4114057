-- wrk script: GET or rank requests from pre-built lines (METHOD PATH [JSON BODY]; bench/wrk/requests.py
-- writes them), each connection waiting an exponential time (mean: the 2nd argument, ms) between
-- requests, so that 40 connections at 200 ms make ~200 req/s of Poisson-like arrivals. wrk is C and
-- uses little CPU, so on a 2-core machine the service keeps more of it than beside python -m loadtest.
-- wrk times each request from its send (per-connection closed loop): a stall delays later sends
-- instead of queueing them, so its tail is a lower bound.
--   wrk -t1 -c40 -d20s --latency -s bench/wrk/reads.lua http://127.0.0.1:8000 -- /tmp/rank.txt 200
local reqs = {}
local idx = 0
local pace_ms = 0
function init(args)
  local f = io.open(args[1])
  for line in f:lines() do
    local m, p, b = line:match("^(%S+) (%S+) ?(.*)$")
    local headers = {}
    if b ~= "" then headers["Content-Type"] = "application/json" else b = nil end
    table.insert(reqs, wrk.format(m, p, headers, b))
  end
  f:close()
  pace_ms = tonumber(args[2])
  idx = math.random(#reqs)
end
function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end
function delay()
  return -math.log(1 - math.random()) * pace_ms
end
