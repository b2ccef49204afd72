-- Shared by the wrk scripts: the clients file, and done() writing wrk's figures as JSON for the harness.
-- wrk runs one Lua state per thread (init/request/response) and one main state (setup/done); the harness
-- runs wrk with one thread, so the thread's counters are read back through thread:get in done().
local common = {}

function common.read_clients()
  local clients = {}
  for line in io.lines(os.getenv("BENCH_CLIENTS")) do
    local cookie, other = line:match("^([^\t]+)\t(%d+)$")
    clients[#clients + 1] = {cookie = cookie, other = tonumber(other)}
  end
  return clients
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + (thread:get("ok") or 0)
    bad = bad + (thread:get("bad") or 0)
  end
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_WRK_OUT"), "w")
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"ok":%d,"not_ok":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, ok, bad, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
  out:close()
end

return common
