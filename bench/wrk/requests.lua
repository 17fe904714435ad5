-- wrk script for `npm run bench`: cycles through prepared requests, one per
-- line of the file named by the first argument, as "METHOD PATH AUTH BODY"
-- separated by tabs ("-" for none). Each line is one agent reusing its own
-- token. Counts responses whose status is not the second argument, and
-- prints one machine-readable summary line.
local reqs = {}
local n, i = 0, 0
bad = 0

function init(args)
  for line in io.lines(args[1]) do
    local method, path, auth, body = line:match("^(%S+)\t(%S+)\t(%S+)\t(.*)$")
    local headers = {}
    if auth ~= "-" then headers["Authorization"] = "Bearer " .. auth end
    if body == "-" then body = nil else headers["Content-Type"] = "application/json" end
    n = n + 1
    reqs[n] = wrk.format(method, path, headers, body)
  end
  expected = tonumber(args[2])
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return reqs[i]
end

function response(status, headers, body)
  if status ~= expected then bad = bad + 1 end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local wrong = 0
  for _, t in ipairs(threads) do wrong = wrong + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"wrong_status":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, wrong, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
