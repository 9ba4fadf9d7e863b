-- wrk script: every request carries the same opaque token (the cached path).
-- Token from the environment: BENCH_TOKEN (run-bench.sh registers it at the stub first).
local token = os.getenv("BENCH_TOKEN") or "bench-one-token"
wrk.headers["Authorization"] = "Bearer " .. token
