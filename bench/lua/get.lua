-- GET $BENCH_PATH (a /get-messages page) as one signed-in user; counts 2xx and non-2xx answers.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

ok, bad = 0, 0
local request_bytes

function init(args)
  local client = common.read_clients()[1]
  request_bytes = wrk.format("GET", os.getenv("BENCH_PATH"), {["Cookie"] = client.cookie})
end

function request()
  return request_bytes
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end
