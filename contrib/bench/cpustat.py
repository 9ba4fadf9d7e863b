#!/usr/bin/python3
"""Prints one JSON line: busy and total clock ticks per CPU (/proc/stat) and the CPU ticks
(user + system) used so far by each named process (NAME=PID arguments). run-bench.sh takes one
before and one after each measured run to show where the CPU went (per CPU, and per request for
each process). Standard library only; Linux only."""

import json
import os
import sys


def cpus():
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals]
                idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
                out[name] = [sum(v) - idle, sum(v)]
    return out


def proc_ticks(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    except (OSError, IndexError, ValueError):
        return None


def main(argv):
    procs = {}
    for arg in argv:
        name, _, pid = arg.partition("=")
        procs[name] = proc_ticks(pid)
    print(json.dumps({"hz": os.sysconf("SC_CLK_TCK"), "cpus": cpus(), "procs": procs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
