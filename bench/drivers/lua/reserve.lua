-- wrk script of the comparison suite (bench/drivers/wrk.ts): POSTs one of
-- the request bodies listed in a generated Lua file, chosen at random per
-- request, with a bearer token; counts the answers by status in each thread
-- and prints one JSON line when wrk is done.
--
--   wrk -t T -c C -d Ds -s reserve.lua URL -- BODIES_FILE TOKEN
--
-- BODIES_FILE returns a Lua array of JSON bodies. The counts are kept per
-- thread (each has its own Lua state) and summed in done().

local threads = {}
local threadCount = 0

function setup(thread)
  threadCount = threadCount + 1
  thread:set("threadIndex", threadCount)
  table.insert(threads, thread)
end

function init(args)
  local bodies = dofile(args[1])
  local headers = {
    ["content-type"] = "application/json",
    ["authorization"] = "Bearer " .. args[2],
  }
  -- Every request formatted once: request() only picks one.
  prepared = {}
  for i, body in ipairs(bodies) do
    prepared[i] = wrk.format("POST", nil, headers, body)
  end
  preparedCount = #prepared
  math.randomseed(os.time() * 1000 + threadIndex)
  ok = 0
  refused = 0
  other = 0
  firstOther = ""
end

function request()
  if preparedCount == 1 then
    return prepared[1]
  end
  return prepared[math.random(preparedCount)]
end

function response(status, headers, body)
  if status == 201 then
    ok = ok + 1
  elseif status == 409 then
    refused = refused + 1
  else
    other = other + 1
    if firstOther == "" then
      firstOther = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

local function jsonString(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local okSum, refusedSum, otherSum, sample = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    okSum = okSum + thread:get("ok")
    refusedSum = refusedSum + thread:get("refused")
    otherSum = otherSum + thread:get("other")
    if sample == "" then
      sample = thread:get("firstOther")
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"wrk":1,"ok":%d,"refused":%d,"other":%d,"firstOther":%s,' ..
      '"requests":%d,"durationUs":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,' ..
      '"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p99Us":%d,"p999Us":%d,"meanUs":%.1f,"maxUs":%d}\n',
    okSum, refusedSum, otherSum, jsonString(sample),
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
