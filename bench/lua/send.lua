-- POST /send-message from many signed-in users (round robin), each body with a unique client_id.
-- Every 2xx answer's client_id goes to $BENCH_WRK_IDS, so the harness can check each was stored exactly once.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local clients, prefix, count = nil, nil, 0
ok, bad = 0, 0
local ids_file

function init(args)
  clients = common.read_clients()
  prefix = os.getenv("BENCH_PREFIX")
  ids_file = io.open(os.getenv("BENCH_WRK_IDS"), "w")
end

function request()
  count = count + 1
  local client = clients[(count % #clients) + 1]
  local body = string.format('{"receiver_id":%d,"content":"bench message %d","client_id":"%s-%d"}',
                             client.other, count, prefix, count)
  return wrk.format("POST", "/send-message",
                    {["Content-Type"] = "application/json", ["Cookie"] = client.cookie}, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    ids_file:write(body:match('"client_id":%s*"([^"]+)"') or "?", "\n")
    ids_file:flush()
  else
    bad = bad + 1
  end
end
