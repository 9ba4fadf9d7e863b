-- wrk script: requests cycle through BENCH_NTOKENS distinct tokens named
-- BENCH_PREFIX .. <index> (index 0 .. BENCH_NTOKENS-1), so that every token is used the same
-- number of times. Each wrk thread starts at its own offset.
local n = tonumber(os.getenv("BENCH_NTOKENS") or "10000")
local prefix = os.getenv("BENCH_PREFIX") or "bench-many-"
local threads = 0
local i = 0

function setup(thread)
   thread:set("start", threads * 7919)
   threads = threads + 1
end

function init(args)
   i = tonumber(start or 0) or 0
end

function request()
   i = (i + 1) % n
   return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. prefix .. i })
end
