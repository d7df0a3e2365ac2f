-- GET /incr with the cookies of BENCH_COOKIES (one `Cookie` header value per line), taken in turn.
-- Each thread starts at its own offset, so that with one session per connection the sessions
-- are spread over the connections. With a one-line file every request uses the same session
-- (the correctness run).
next_id = 0
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
setup = function(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end
local requests = {}
local counter = 0
init = function(args)
  local id = thread_id or 0
  for line in io.lines(os.getenv("BENCH_COOKIES")) do
    requests[#requests + 1] = wrk.format("GET", "/incr", { Cookie = line })
  end
  counter = math.floor(id * #requests / threads)
end
request = function()
  counter = counter % #requests + 1
  return requests[counter]
end
