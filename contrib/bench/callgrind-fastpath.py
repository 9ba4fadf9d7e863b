#!/usr/bin/python3
"""Instructions per request of the gateway HAProxy under callgrind, per cfg: the figure that does not
depend on what else runs on the box (req/s and CPU time do). Each row runs the gateway twice
(N/5 and N requests, after a warm-up) and divides the difference, so start-up cancels out.

Usage: contrib/bench/callgrind-fastpath.py HAPROXY [N=1000] [rows]
rows (comma-separated): bare (no rules), barejwt (bare + a constant 849-byte JWT header), plain
(the route rules, no auth), fponly-fp / fpspoe-fp (bare + the fast-path rules, without / with the
SPOE filter), lean / main (the shipped cfg through the agent), lean-fp / main-fp (the same plus
the fast-path rules, served from the map). "lean" reads LEAN_REPO's haproxy-conf/ and spoe/
(default: this tree). The agent is AGENT (default build/phantom-token-agent); the API and the
IdP are the benchmark's stubs. One token, 849-byte JWT.
"""
import atexit, http.client, os, shutil, subprocess, sys, time, socket, re, tempfile, glob
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "integration"))
import test_fastpath as tf
HAP = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LEAN = os.environ.get("LEAN_REPO", REPO)  # another tree whose haproxy-conf/ and spoe/ to measure as "lean"
W = tempfile.mkdtemp(prefix="pta-callgrind.")
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def wait_port(p, t=60):
    end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", p), 0.2).close(); return
        except OSError: time.sleep(0.1)
    raise SystemExit("port %d never up" % p)
procs = []


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait()
    shutil.rmtree(W, ignore_errors=True)


atexit.register(cleanup)
def start(argv, env=None, log="x"):
    p = subprocess.Popen(argv, env=env, stdout=open(os.path.join(W, log + ".out"), "w"), stderr=subprocess.STDOUT)
    procs.append(p); return p
key = os.path.join(W, "key.map"); open(key, "w").write("fastpath-key %s\n" % tf.KEY_B64); os.chmod(key, 0o600)
mp = os.path.join(W, "fastpath.map"); open(mp, "w").close()
sock = os.path.join(W, "stats.sock")
BP = port(); env = dict(os.environ, BENCH_BACKEND_BIND="127.0.0.1:%d" % BP)
start(["taskset", "-c", "1", HAP, "-db", "-f", REPO + "/contrib/bench/haproxy-backend.cfg"], env, "backend"); wait_port(BP)
stub = start(["python3", REPO + "/contrib/bench/idp_stub.py", "--port", "0", "--jwt-size", "849"], None, "stub")
for _ in range(100):
    t = open(os.path.join(W, "stub.out")).read()
    if "READY" in t: break
    time.sleep(0.1)
SP = int(re.search(r"READY (\d+)", t).group(1))
c = http.client.HTTPConnection("127.0.0.1", SP); c.request("POST", "/_control/mode", '{"all_active": true}'); c.getresponse().read()
AP = port()
start([os.environ.get("AGENT", REPO + "/build/phantom-token-agent"), "--listen", "127.0.0.1:%d" % AP, "--log-level", "warn", "--client-auth", "none",
       "--introspection-url", "http://127.0.0.1:%d/introspect" % SP, "--fastpath-socket", "unix:" + sock, "--fastpath-map", mp,
       "--fastpath-key-file", key, "--fastpath-ttl", "300s"], None, "agent"); wait_port(AP)
def fix(src):
    t = open(src).read()
    t = re.sub(r"(?m)^    default_backend api$", "    default_backend api-servers", t)
    return re.sub(r"(?m)^backend api$", "backend api-servers", t)
cfgs = {}
cfgs["bare"] = REPO + "/contrib/fastpath-proto/haproxy-bare.cfg"
cfgs["barejwt"] = REPO + "/contrib/fastpath-proto/haproxy-bare-jwt.cfg"
cfgs["plain"] = os.path.join(W, "plain.cfg"); open(cfgs["plain"], "w").write(fix(REPO + "/contrib/bench/haproxy-plain.cfg"))
cfgs["fponly-fp"] = REPO + "/contrib/fastpath-proto/haproxy-fp-only.cfg"
cfgs["fpspoe-fp"] = REPO + "/contrib/fastpath-proto/haproxy-fp-only.cfg"
for name, src in (("lean", LEAN + "/haproxy-conf/haproxy.cfg"), ("main", REPO + "/haproxy-conf/haproxy.cfg")):
    p = os.path.join(W, name + ".cfg"); open(p, "w").write(fix(src)); cfgs[name] = p
    p = os.path.join(W, name + "-fp.cfg"); open(p, "w").write(tf.fastpath_cfg(src)); cfgs[name + "-fp"] = p
rows = sys.argv[3].split(",") if len(sys.argv) > 3 else ["bare", "barejwt", "lean", "lean-fp", "main", "main-fp"]
def run_requests(gp, n, token="bench-one"):
    c = http.client.HTTPConnection("127.0.0.1", gp)
    for i in range(n):
        c.request("GET", "/api/x", headers={"Authorization": "Bearer " + token}); r = c.getresponse(); r.read()
        if r.status != 200: raise SystemExit("status %d" % r.status)
def measure(row, n):
    gp = port()
    genv = dict(os.environ, PHANTOM_BIND="127.0.0.1:%d" % gp, PHANTOM_BACKEND="127.0.0.1:%d" % BP, PHANTOM_AGENT="127.0.0.1:%d" % AP,
                PHANTOM_SPOE_CONF=(LEAN if row.startswith("lean") else REPO) + "/spoe/phantom-token.conf", PHANTOM_STATS_SOCKET=sock)
    if row.endswith("-fp"): genv.update(PHANTOM_FASTPATH_MAP=mp, PHANTOM_FASTPATH_KEY=key, PHANTOM_FASTPATH_SOCKET=sock)
    if row == "fpspoe-fp": genv.update(FP_WITH_SPOE="1")
    out = os.path.join(W, "cg.%s.%d" % (row, n))
    g = start(["taskset", "-c", "1", "valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
               HAP, "-db", "-f", cfgs[row]], genv, "gw-" + row)
    wait_port(gp, 120)
    if row.endswith("-fp") or row in ("lean", "main"):
        time.sleep(4)  # the agent's session (re)connected and re-filled; the SPOE backend is up
    run_requests(gp, 20)
    run_requests(gp, n)
    g.terminate(); g.wait()
    for line in open(out):
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    return 0
c = http.client.HTTPConnection("127.0.0.1", SP)
for row in rows:
    if row in ("fponly-fp", "fpspoe-fp") and "main-fp" not in rows[:rows.index(row)]:
        measure("main-fp", 10)  # these never ask the agent: it learns the token through this one
    a = measure(row, N // 5); b = measure(row, N)
    print("%-9s %8.0f instructions/request" % (row, (b - a) / (N - N // 5)), flush=True)
