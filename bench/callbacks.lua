-- wrk script for bench/callbacks.py: walks a file of pre-encrypted callbacks, one distinct event each.
-- Each line of the file is "query<TAB>body"; usage: wrk ... -s callbacks.lua URL -- FILE
local requests = {}
local position = 0

function init(args)
  local headers = { ["Content-Type"] = "text/xml" }
  for line in io.lines(args[1]) do
    local query, body = line:match("^([^\t]*)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", "/wecom/callback?" .. query, headers, body)
  end
end

function request()
  position = position + 1
  if position > #requests then
    position = 1 -- wrapped: later events repeat earlier ones (the bench sizes the file to avoid this)
  end
  return requests[position]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
