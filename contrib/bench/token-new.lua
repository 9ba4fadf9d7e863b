-- wrk script: every request carries a token never seen before (the miss path: one
-- introspection per request). Tokens are BENCH_PREFIX .. <thread> .. "-" .. <counter>; the prefix
-- should differ between runs (run-bench.sh adds a timestamp) so nothing is cached from before.
local prefix = os.getenv("BENCH_PREFIX") or ("bench-new-" .. os.time() .. "-")
local threads = 0
local i = 0
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
