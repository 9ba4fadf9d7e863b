#!/usr/bin/python3
"""Fills the fast-path map of a running HAProxy over its stats socket (prototype benchmark helper).

Each entry is what the agent would publish for a positive decision: key = hex(SHA-256(
"<Authorization value>|<required scopes>|<audience>|<key file's base64 text>")[:16]) in upper case (HAProxy's "hex" converter), value =
"<expiry epoch>:<JWT>". Uses the payload form of "add map" on one connection, in batches.
"""
import argparse
import base64
import hashlib
import socket
import time


def read_key(path):
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, value = line.split(None, 1)
        if name == "fastpath-key":
            return value.strip()
    raise SystemExit("no fastpath-key line in " + path)


def map_key(key, authorization, scopes, audience=""):
    msg = (authorization + "|" + scopes + "|" + audience + "|" + key).encode()
    return hashlib.sha256(msg).digest()[:16].hex().upper()


def fake_jwt(size):
    body = base64.urlsafe_b64encode(b"x" * size).decode().rstrip("=")
    return ("eyJhbGciOiJSUzI1NiJ9." + body)[:size - 4] + ".sig"


def cli(sock_path, text):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(text.encode())
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--map", required=True)
    p.add_argument("--key-file", required=True)
    p.add_argument("--token", action="append", default=[])
    p.add_argument("--prefix", default="bench-many-")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--scopes", default="")
    p.add_argument("--ttl", type=int, default=3600)
    p.add_argument("--jwt-size", type=int, default=849)
    a = p.parse_args()
    key = read_key(a.key_file)
    tokens = list(a.token) + [a.prefix + str(i) for i in range(a.count)]
    value = "%010d:%s" % (int(time.time()) + a.ttl, fake_jwt(a.jwt_size))
    # A payload must fit in one HAProxy buffer (tune.bufsize): a few dozen entries per command.
    batch = max(1, 24000 // (len(value) + 40))
    for i in range(0, len(tokens), batch):
        lines = ["%s %s" % (map_key(key, "Bearer " + t, a.scopes), value) for t in tokens[i:i + batch]]
        out = cli(a.socket, "add map %s <<\n%s\n\n" % (a.map, "\n".join(lines)))
        if out.strip():
            raise SystemExit("add map: " + out)
    print(cli(a.socket, "show map\n"))


if __name__ == "__main__":
    main()
