-- wrk script: a flood of distinct garbage tokens (well-formed, unknown to the IdP), each one
-- introspected once. Tokens are BENCH_PREFIX .. <thread> .. "-" .. <counter>. With
-- BENCH_FLOOD_PER_THREAD set, each thread stops after that many answers, so the run is bounded by
-- the token count as well as by wrk's -d.
local prefix = os.getenv("BENCH_PREFIX") or ("flood-" .. os.time() .. "-")
local per_thread = tonumber(os.getenv("BENCH_FLOOD_PER_THREAD") or "0")
local threads = 0
local i = 0
local answered = 0
local id = "0"

function setup(thread)
   thread:set("tag", tostring(threads))
   threads = threads + 1
end

function init(args)
   id = tag or "0" -- the global set by setup()
end

function request()
   i = i + 1
   return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. prefix .. id .. "-" .. i })
end

function response(status, headers, body)
   answered = answered + 1
   if per_thread > 0 and answered >= per_thread then
      wrk.thread:stop()
   end
end
