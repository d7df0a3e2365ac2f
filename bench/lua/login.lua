-- POST /login?user=...: no cookie (a new session per request), users cycling over 1000 names.
next_id = 0
local counter = 1
setup = function(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end
local requests = {}
init = function(args)
  local id = thread_id or 0
  for i = 1, 1000 do
    requests[i] = wrk.format("POST", "/login?user=u" .. (id * 1000 + i), { ["Content-Length"] = "0" })
  end
end
request = function()
  counter = counter % #requests + 1
  return requests[counter]
end
