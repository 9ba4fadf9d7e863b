#!/usr/bin/python3
"""SPOP conformance of the real agent binary, driven by a raw SPOP client written here.

HAProxy 2.6 (what the other integration tests run) cannot produce several things HAProxy 3.1/3.2
do -- NOTIFYs without messages, a reset on a split AGENT-HELLO -- and never sends malformed frames.
This file speaks SPOP v2 (doc/SPOE.txt section 3) to the agent directly and decodes every frame it
answers (varints, typed data, KV-lists, ACK action lists), so assertions are on decoded fields.

Each test class runs its own agent (--log-level debug, logs in a temporary directory kept when the
class fails) and stops it with SIGTERM at the end: the exit status must be 0, which is how the
sanitizer build reports a leak or undefined behaviour. Only InFlight starts the test IdP.

Environment: PTA_AGENT (the agent binary, as harness.py), PTA_SPOP_SEED (the mutation test's seed),
PTA_KEEP_LOGS (keep the agents' logs). Standard library only.
"""

import collections
import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# ---- SPOP constants (SPOE.txt section 3) -------------------------------------------------------

HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY = 1, 2, 3
AGENT_HELLO, AGENT_DISCONNECT, ACK = 101, 102, 103
FIN, ABORT = 0x1, 0x2

T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64, T_IPV4, T_IPV6, T_STR, T_BIN = range(10)
SCOPE_TXN = 2
SET_VAR, UNSET_VAR = 1, 2

ST_NORMAL, ST_IO, ST_TIMEOUT, ST_TOO_BIG, ST_INVALID = 0, 1, 2, 3, 4
ST_NO_VSN, ST_NO_FRAME_SIZE, ST_NO_CAP, ST_BAD_VSN, ST_BAD_FRAME_SIZE = 5, 6, 7, 8, 9
ST_FRAG_NOT_SUPPORTED = 10

U64 = (1 << 64) - 1

# HAProxy 2.6's "option spop-check" HELLO, byte for byte (healthcheck true, empty capabilities).
HAPROXY26_HEALTHCHECK_HELLO = bytes.fromhex(
    "0000004e0100000001000012737570706f727465642d76657273696f6e730803322e300e6d61782d6672616d652d"
    "73697a6503fcf0060c6361706162696c697469657308000b6865616c7468636865636b11")


# ---- encoding ----------------------------------------------------------------------------------

def enc_varint(n):
    """The "peers" varint: below 240 one byte; otherwise 4 bits in a first byte whose high nibble
    is all ones, then 7 bits per byte, the high bit meaning another byte follows."""
    if not 0 <= n <= U64:
        raise ValueError("varint out of range: %r" % n)
    if n < 240:
        return bytes([n])
    out = bytearray([0xF0 | (n & 0x0F)])
    n = (n - 240) >> 4
    while n >= 128:
        out.append(0x80 | (n & 0x7F))
        n = (n - 128) >> 7
    out.append(n)
    return bytes(out)


def enc_bytes(b):
    if isinstance(b, str):
        b = b.encode()
    return enc_varint(len(b)) + b


def v_null():
    return bytes([T_NULL])


def v_bool(b):
    return bytes([T_BOOL | (0x10 if b else 0)])


def v_int32(n):
    return bytes([T_INT32]) + enc_varint(n & U64)  # negatives: the 64-bit two's complement


def v_uint32(n):
    return bytes([T_UINT32]) + enc_varint(n)


def v_int64(n):
    return bytes([T_INT64]) + enc_varint(n & U64)


def v_uint64(n):
    return bytes([T_UINT64]) + enc_varint(n)


def v_ipv4(a):
    return bytes([T_IPV4]) + socket.inet_pton(socket.AF_INET, a)


def v_ipv6(a):
    return bytes([T_IPV6]) + socket.inet_pton(socket.AF_INET6, a)


def v_str(s):
    return bytes([T_STR]) + enc_bytes(s)


def v_bin(b):
    return bytes([T_BIN]) + enc_bytes(b)


def kvlist(pairs):
    """pairs: [(name, encoded typed value), ...]; a value of None leaves the key out."""
    return b"".join(enc_bytes(k) + v for k, v in pairs if v is not None)


def message(name, args):
    """One entry of a NOTIFY's LIST-OF-MESSAGES: name, NB-ARGS (one byte), KV-list."""
    return enc_bytes(name) + bytes([len(args)]) + kvlist(args)


def frame(ftype, sid, fid, payload, flags=FIN):
    body = bytes([ftype]) + struct.pack(">I", flags) + enc_varint(sid) + enc_varint(fid) + payload
    return struct.pack(">I", len(body)) + body


def hello_payload(versions="2.0", max_frame=16380, caps="pipelining", healthcheck=None,
                  engine_id="0123-test-engine"):
    """A HAPROXY-HELLO KV-list; None leaves a key out (max_frame may also be pre-encoded bytes)."""
    mfs = max_frame if isinstance(max_frame, bytes) or max_frame is None else v_uint32(max_frame)
    return kvlist([
        ("supported-versions", None if versions is None else v_str(versions)),
        ("max-frame-size", mfs),
        ("capabilities", None if caps is None else v_str(caps)),
        ("healthcheck", None if healthcheck is None else v_bool(healthcheck)),
        ("engine-id", None if engine_id is None else v_str(engine_id)),
    ])


def hello_frame(**kw):
    return frame(HAPROXY_HELLO, 0, 0, hello_payload(**kw))


def check_token_args(auth=None, auth_count=None, scopes=None, realm=None, extra=()):
    """The shipped SPOE config's arguments, typed as HAProxy sends them: a missing header or an
    unset variable is NULL, req.hdr_cnt is a SINT (INT64 on the wire)."""
    if auth_count is None:
        auth_count = 0 if auth is None else 1
    def enc(s):
        if s is None:
            return v_null()
        return s if isinstance(s, bytes) else v_str(s)
    return [("authorization", enc(auth)), ("auth_count", v_int64(auth_count)),
            ("scopes", enc(scopes)), ("realm", enc(realm))] + list(extra)


def notify_frame(sid, fid, flags=FIN, **kw):
    return frame(NOTIFY, sid, fid, message("check-token", check_token_args(**kw)), flags)


def disconnect_frame(status, msg):
    return frame(HAPROXY_DISCONNECT, 0, 0,
                 kvlist([("status-code", v_uint32(status)), ("message", v_str(msg))]))


# ---- decoding ----------------------------------------------------------------------------------

class DecodeError(AssertionError):
    pass


Value = collections.namedtuple("Value", "type value")
Frame = collections.namedtuple("Frame", "type flags sid fid payload")
Action = collections.namedtuple("Action", "kind scope name value")


class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def at_end(self):
        return self.pos >= len(self.data)

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise DecodeError("truncated: %d bytes wanted at offset %d of %d"
                              % (n, self.pos, len(self.data)))
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self):
        return self.take(1)[0]

    def rest(self):
        return self.take(len(self.data) - self.pos)

    def varint(self):
        first = self.byte()
        if first < 240:
            return first
        value, shift = first, 4
        for _ in range(9):
            b = self.byte()
            value += b << shift
            if b < 128:
                if value > U64:
                    raise DecodeError("varint above 2^64-1")
                return value
            shift += 7
        raise DecodeError("varint longer than 10 bytes")

    def string(self):
        return self.take(self.varint())

    def value(self):
        tf = self.byte()
        t = tf & 0x0F
        if t == T_NULL:
            return Value(t, None)
        if t == T_BOOL:
            return Value(t, bool(tf & 0x10))
        if t in (T_INT32, T_INT64):
            v = self.varint()
            return Value(t, v - (1 << 64) if v >= 1 << 63 else v)
        if t in (T_UINT32, T_UINT64):
            return Value(t, self.varint())
        if t == T_IPV4:
            return Value(t, socket.inet_ntop(socket.AF_INET, self.take(4)))
        if t == T_IPV6:
            return Value(t, socket.inet_ntop(socket.AF_INET6, self.take(16)))
        if t == T_STR:
            return Value(t, self.string().decode("utf-8"))
        if t == T_BIN:
            return Value(t, self.string())
        raise DecodeError("unknown typed-data type %d" % t)


def parse_frame(body):
    r = Reader(body)
    ftype = r.byte()
    flags = struct.unpack(">I", r.take(4))[0]
    sid = r.varint()
    fid = r.varint()
    return Frame(ftype, flags, sid, fid, r.rest())


def parse_kvlist(payload):
    r = Reader(payload)
    out = []
    while not r.at_end():
        out.append((r.string().decode("utf-8"), r.value()))
    return out


def kv_dict(payload):
    pairs = parse_kvlist(payload)
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise DecodeError("duplicate keys in %r" % names)
    return dict(pairs)


def parse_actions(payload):
    """An ACK's LIST-OF-ACTIONS: set-var (3 args: scope, name, value) and unset-var (2 args)."""
    r = Reader(payload)
    out = []
    while not r.at_end():
        kind, nargs = r.byte(), r.byte()
        if kind == SET_VAR and nargs == 3:
            scope = r.byte()
            name = r.string().decode("utf-8")
            out.append(Action(kind, scope, name, r.value()))
        elif kind == UNSET_VAR and nargs == 2:
            scope = r.byte()
            out.append(Action(kind, scope, r.string().decode("utf-8"), None))
        else:
            raise DecodeError("unknown action %d with %d args" % (kind, nargs))
    return out


def split_frames(data):
    """Whole frames from a byte stream, and the bytes of an incomplete last one."""
    frames = []
    while len(data) >= 4:
        n = struct.unpack(">I", data[:4])[0]
        if len(data) < 4 + n:
            break
        frames.append(parse_frame(data[4:4 + n]))
        data = data[4 + n:]
    return frames, data


# ---- the client --------------------------------------------------------------------------------

class Conn:
    """One SPOP connection to the agent, with a receive buffer so frames can be split or coalesced
    on the wire without the tests noticing."""

    def __init__(self, port, timeout=5.0, sock=None):
        """Connects to 127.0.0.1:port, or wraps sock (a unix or IPv6 socket already connected)."""
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.was_reset = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("nothing from the agent in time (%d bytes buffered)" % len(self.buf))
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("nothing from the agent in time (%d bytes buffered)" % len(self.buf))
        except ConnectionResetError:
            chunk, self.was_reset = b"", True
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def recv_frame(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return parse_frame(body)
            if self.eof or not self._fill(deadline):
                raise EOFError("the agent closed the connection (%d bytes of a partial frame)"
                               % len(self.buf))

    def expect_close(self, timeout=5.0):
        """Reads up to the agent's close; no byte may come before it."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(deadline)
        if self.buf:
            raise AssertionError("bytes after the last frame: %r" % self.buf[:64])

    def hello(self, **kw):
        """Sends a HAPROXY-HELLO; returns the AGENT-HELLO frame and its KV-list as a dict."""
        self.send(hello_frame(**kw))
        f = self.recv_frame()
        if f.type != AGENT_HELLO:
            raise AssertionError("expected AGENT-HELLO, got %r" % (f,))
        return f, kv_dict(f.payload)

    def reset(self):
        """Closes with an RST (SO_LINGER 0), like a peer that crashes."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


# ---- agent processes ---------------------------------------------------------------------------

def agent_binary():
    if not os.access(harness.AGENT, os.X_OK):
        raise unittest.SkipTest("agent not found at %s (set PTA_AGENT)" % harness.AGENT)
    return harness.AGENT


def start_idp(tmpdir):
    """The test IdP without client authentication; returns (Proc, port)."""
    return harness.start_py_server("idp", [harness.IDP_PY, "--port", "0"], tmpdir)


class AgentTestCase(unittest.TestCase):
    """One agent per class; every test checks afterwards that it is still alive."""

    AGENT_ARGS = []
    WITH_IDP = False
    agent = idp = None

    @classmethod
    def setUpClass(cls):
        binary = agent_binary()
        cls.tmpdir = tempfile.mkdtemp(prefix="pta-spop-")
        cls.failed = False
        args = list(cls.AGENT_ARGS)
        if cls.WITH_IDP:
            cls.idp, cls.idp_port = start_idp(cls.tmpdir)
            args += ["--introspection-url", "http://127.0.0.1:%d/introspect" % cls.idp_port,
                     "--client-auth", "none"]
        cls.port = harness.free_port()
        cls.agent = harness.Proc("agent", [binary, "--listen", "127.0.0.1:%d" % cls.port,
                                           "--log-level", "debug"] + args, cls.tmpdir)
        try:
            harness.wait_until(lambda: cls.agent.check_alive() and harness.port_open(cls.port),
                               15, "agent listening")
            cls._probe_hello()
        except BaseException:
            cls._stop_all()
            raise

    @classmethod
    def _probe_hello(cls):
        """Fails the whole class at once (not every test after a 5 s timeout) when the agent
        does not answer a plain HELLO."""
        c = Conn(cls.port)
        try:
            c.send(hello_frame())
            f = c.recv_frame(timeout=3)
            if f.type != AGENT_HELLO:
                raise AssertionError("the agent answers a HELLO with %r" % (f,))
        except (OSError, EOFError) as e:
            raise AssertionError("the agent does not answer a HELLO: %s; its log ends with:\n%s"
                                 % (e, cls.agent.log_text()[-2000:]))
        finally:
            c.close()

    @classmethod
    def _stop_all(cls):
        rc = cls.agent.stop(signal.SIGTERM, timeout=10) if cls.agent else 0
        if cls.idp:
            cls.idp.stop()
        return rc

    @classmethod
    def tearDownClass(cls):
        log = cls.agent.log_text() if cls.agent else ""
        rc = cls._stop_all()
        keep = os.environ.get("PTA_KEEP_LOGS") or cls.failed or rc != 0
        if keep:
            sys.stderr.write("%s: agent logs kept in %s\n" % (cls.__name__, cls.tmpdir))
        else:
            shutil.rmtree(cls.tmpdir, ignore_errors=True)
        # Under the sanitizers a leak or an error report shows up only as this exit status.
        if rc != 0:
            raise AssertionError("agent exited %s on SIGTERM; its log ends with:\n%s"
                                 % (rc, log[-4000:]))

    def setUp(self):
        self.agent.check_alive()

    def tearDown(self):
        self.agent.check_alive()

    def run(self, result=None):
        """Notes a failure so that tearDownClass keeps the agent's log."""
        def problems():
            return len(result.failures) + len(result.errors) if result is not None else 0
        before = problems()
        try:
            return super().run(result)
        finally:
            if problems() > before:
                type(self).failed = True

    # helpers

    def connect(self, hello=True, **kw):
        c = Conn(self.port)
        self.addCleanup(c.close)
        if hello:
            c.hello(**kw)
        return c

    def assertAck(self, f, sid=None, fid=None):
        """An ACK with FIN and at least one action; returns the actions."""
        self.assertEqual(f.type, ACK, f)
        self.assertTrue(f.flags & FIN, f)
        self.assertFalse(f.flags & ABORT, f)
        if sid is not None:
            self.assertEqual((f.sid, f.fid), (sid, fid), f)
        actions = parse_actions(f.payload)
        self.assertGreaterEqual(len(actions), 1, "an ACK without actions: %r" % (f,))
        return actions

    def ack_vars(self, f, sid=None, fid=None):
        """The set-var actions of an ACK as {name: Value}; all must be in the txn scope."""
        out = {}
        for a in self.assertAck(f, sid, fid):
            self.assertEqual(a.scope, SCOPE_TXN, a)
            self.assertEqual(a.kind, SET_VAR, a)
            self.assertNotIn(a.name, out, "variable set twice: %r" % (f,))
            out[a.name] = a.value
        return out

    def assertStatus(self, v, status):
        self.assertEqual(v.get("status"), Value(T_INT32, status), v)

    def assertDisconnect(self, c, status, timeout=5.0):
        """An AGENT-DISCONNECT with that status, then the agent closes the connection."""
        f = c.recv_frame(timeout)
        self.assertEqual(f.type, AGENT_DISCONNECT, f)
        self.assertTrue(f.flags & FIN, f)
        self.assertEqual((f.sid, f.fid), (0, 0), f)
        kv = kv_dict(f.payload)
        self.assertEqual(kv.get("status-code"), Value(T_UINT32, status), kv)
        self.assertEqual(kv.get("message", Value(None, None)).type, T_STR, kv)
        if status != ST_NORMAL:
            self.assertTrue(kv["message"].value, "an error DISCONNECT without a message")
        c.expect_close(timeout)
        return kv

    def assertAgentServes(self):
        """A fresh connection: HELLO, one NOTIFY without credentials, its 401."""
        c = self.connect()
        c.send(notify_frame(5, 6))
        self.assertStatus(self.ack_vars(c.recv_frame(), 5, 6), 401)
        c.close()


# ---- 1-3: HELLO --------------------------------------------------------------------------------

class Hello(AgentTestCase):
    AGENT_MAX = 4096
    AGENT_ARGS = ["--max-frame-size", str(AGENT_MAX)]

    def assertAgentHello(self, f, kv, max_frame):
        self.assertEqual(f.type, AGENT_HELLO)
        self.assertEqual(f.flags, FIN)
        self.assertEqual((f.sid, f.fid), (0, 0))
        self.assertEqual(set(kv), {"version", "max-frame-size", "capabilities"}, kv)
        self.assertEqual(kv["version"], Value(T_STR, "2.0"))
        self.assertEqual(kv["max-frame-size"], Value(T_UINT32, max_frame))
        self.assertEqual(kv["capabilities"], Value(T_STR, "pipelining"))

    def test_hello_max_frame_size_is_the_minimum(self):
        for ours, expected in ((1024, 1024), (256, 256), (self.AGENT_MAX, self.AGENT_MAX),
                               (16380, self.AGENT_MAX), (0xFFFFFFFF, self.AGENT_MAX)):
            with self.subTest(ours=ours):
                c = self.connect(hello=False)
                f, kv = c.hello(max_frame=ours)
                self.assertAgentHello(f, kv, expected)
                c.close()

    def test_hello_max_frame_size_as_other_integer_types(self):
        for enc in (v_uint64(2000), v_int32(2000), v_int64(2000)):
            with self.subTest(enc=enc.hex()):
                c = self.connect(hello=False)
                f, kv = c.hello(max_frame=enc)
                self.assertAgentHello(f, kv, 2000)
                c.close()

    def test_hello_versions_list_and_capabilities_variants(self):
        for versions, caps in (("1.0, 2.0", "pipelining"), ("2.0", ""),
                               (" 2.0 ", "async,pipelining"), ("2.1", "pipelining")):
            with self.subTest(versions=versions, caps=caps):
                c = self.connect(hello=False)
                f, kv = c.hello(versions=versions, caps=caps, max_frame=1000)
                self.assertAgentHello(f, kv, 1000)
                c.close()

    def test_agent_hello_arrives_in_one_recv(self):
        """HAProxy 3.2 resets a connection whose AGENT-HELLO arrives split: the first recv() right
        after readability must hold the whole frame (tried on 20 connections)."""
        for i in range(20):
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(hello_frame(max_frame=16380))
                r, _, _ = select.select([s], [], [], 5)
                self.assertTrue(r, "no AGENT-HELLO within 5 s")
                data = s.recv(1 << 20)
                self.assertGreaterEqual(len(data), 4, data)
                n = struct.unpack(">I", data[:4])[0]
                self.assertEqual(len(data), 4 + n, "AGENT-HELLO split on connection %d: %r"
                                 % (i, data))
                f = parse_frame(data[4:])
                self.assertAgentHello(f, kv_dict(f.payload), self.AGENT_MAX)

    def test_healthcheck_hello_then_close(self):
        c = self.connect(hello=False)
        c.send(HAPROXY26_HEALTHCHECK_HELLO)
        f = c.recv_frame()
        self.assertAgentHello(f, kv_dict(f.payload), self.AGENT_MAX)
        c.expect_close()

    def _hello_error(self, status, **kw):
        c = self.connect(hello=False)
        c.send(hello_frame(**kw))
        self.assertDisconnect(c, status)
        self.assertAgentServes()

    def test_hello_without_versions_is_status_5(self):
        self._hello_error(ST_NO_VSN, versions=None)

    def test_hello_without_max_frame_size_is_status_6(self):
        self._hello_error(ST_NO_FRAME_SIZE, max_frame=None)

    def test_hello_max_frame_size_of_a_wrong_type_is_status_6(self):
        self._hello_error(ST_NO_FRAME_SIZE, max_frame=v_str("16380"))

    def test_hello_without_capabilities_is_status_7(self):
        self._hello_error(ST_NO_CAP, caps=None)

    def test_hello_version_1_only_is_status_8(self):
        self._hello_error(ST_BAD_VSN, versions="1.0")

    def test_hello_max_frame_size_100_is_status_9(self):
        self._hello_error(ST_BAD_FRAME_SIZE, max_frame=100)

    def test_hello_max_frame_size_255_is_status_9(self):
        self._hello_error(ST_BAD_FRAME_SIZE, max_frame=255)

    def test_hello_max_frame_size_above_uint32_is_status_9(self):
        self._hello_error(ST_BAD_FRAME_SIZE, max_frame=v_uint64(1 << 33))

    def test_answers_fit_the_minimum_frame_size(self):
        """At max-frame-size 256 (the spec's floor) the ordinary denials still fit an ACK."""
        c = self.connect(max_frame=256)
        c.send(notify_frame(1, 1))
        self.assertStatus(self.ack_vars(c.recv_frame(), 1, 1), 401)
        c.send(notify_frame(1, 2, auth="Bearer a b"))
        v = self.ack_vars(c.recv_frame(), 1, 2)
        self.assertStatus(v, 400)
        self.assertEqual(v["auth_error"], Value(T_STR, "invalid_request"))
        c.send(notify_frame(1, 3, auth="Bearer min-frame-token-0001"))
        self.assertStatus(self.ack_vars(c.recv_frame(), 1, 3), 503)

    def test_notify_before_hello_is_status_4(self):
        c = self.connect(hello=False)
        c.send(notify_frame(1, 1))
        self.assertDisconnect(c, ST_INVALID)

    def test_second_hello_is_status_4(self):
        c = self.connect()
        c.send(hello_frame())
        self.assertDisconnect(c, ST_INVALID)


# ---- 4-6, 8, 9: NOTIFY, ACK, pipelining, errors -------------------------------------------------

class Notify(AgentTestCase):
    """No introspection URL: a well-formed token is answered 503 (asynchronously)."""

    def roundtrip(self, frame_bytes, sid, fid, **hello):
        c = self.connect(**hello)
        c.send(frame_bytes)
        return self.ack_vars(c.recv_frame(), sid, fid)

    def test_ack_echoes_stream_and_frame_ids(self):
        ids = [(0, 0), (0, 1), (1, 0), (239, 240), (240, 239), (2047, 2048),
               (1 << 40, (1 << 40) + 1), (U64, U64 - 1)]
        c = self.connect()
        for sid, fid in ids:
            with self.subTest(sid=sid, fid=fid):
                c.send(notify_frame(sid, fid))
                self.assertStatus(self.ack_vars(c.recv_frame(), sid, fid), 401)
        for sid, fid in ids:  # the same ids again, with a token: the deferred path echoes them too
            with self.subTest(sid=sid, fid=fid, token=True):
                c.send(notify_frame(sid, fid, auth="Bearer ids-token-0001"))
                self.assertStatus(self.ack_vars(c.recv_frame(), sid, fid), 503)

    def test_no_credentials_is_401_with_challenge(self):
        v = self.roundtrip(notify_frame(3, 4), 3, 4)
        self.assertEqual(v, {"status": Value(T_INT32, 401),
                             "www_authenticate": Value(T_STR, 'Bearer realm="api"')})

    def test_basic_scheme_is_401_without_error(self):
        v = self.roundtrip(notify_frame(1, 2, auth="Basic dXNlcjpwYXNz"), 1, 2)
        self.assertEqual(v, {"status": Value(T_INT32, 401),
                             "www_authenticate": Value(T_STR, 'Bearer realm="api"')})

    def test_bearer_with_two_words_is_400_invalid_request(self):
        v = self.roundtrip(notify_frame(1, 2, auth="Bearer a b"), 1, 2)
        self.assertStatus(v, 400)
        self.assertEqual(v["auth_error"], Value(T_STR, "invalid_request"))
        self.assertTrue(v["www_authenticate"].value.startswith('Bearer realm="api", '
                                                               'error="invalid_request"'), v)
        self.assertNotIn("jwt", v)

    def test_auth_count_2_is_400_invalid_request(self):
        v = self.roundtrip(notify_frame(1, 2, auth="Bearer good-token-0002", auth_count=2), 1, 2)
        self.assertStatus(v, 400)
        self.assertEqual(v["auth_error"], Value(T_STR, "invalid_request"))
        self.assertIn('error="invalid_request"', v["www_authenticate"].value)

    def test_token_without_introspection_url_is_503(self):
        v = self.roundtrip(notify_frame(9, 10, auth="Bearer well-formed-token-0003"), 9, 10)
        self.assertStatus(v, 503)
        self.assertEqual(v["auth_error"], Value(T_STR, "server_error"))
        self.assertNotIn("www_authenticate", v)
        self.assertNotIn("jwt", v)

    def test_realm_goes_into_the_challenge(self):
        v = self.roundtrip(notify_frame(1, 1, realm="orders"), 1, 1)
        self.assertEqual(v["www_authenticate"], Value(T_STR, 'Bearer realm="orders"'))
        v = self.roundtrip(notify_frame(1, 2, auth="Bearer a b", realm="orders"), 1, 2)
        self.assertTrue(v["www_authenticate"].value.startswith('Bearer realm="orders", '), v)

    def test_authorization_as_binary_is_read(self):
        v = self.roundtrip(notify_frame(1, 1, auth=v_bin(b"Bearer a b")), 1, 1)
        self.assertStatus(v, 400)

    def test_notify_without_messages_gets_a_non_empty_ack(self):
        """HAProxy 3.1/3.2 send NOTIFYs without messages; 3.1.0 hangs on an empty ACK."""
        for sid, fid in ((0, 0), (17, 42), (1 << 40, 3)):
            c = self.connect()
            c.send(frame(NOTIFY, sid, fid, b""))
            actions = self.assertAck(c.recv_frame(), sid, fid)
            self.assertIn(Action(UNSET_VAR, SCOPE_TXN, "status", None), actions)
            self.assertFalse([a for a in actions if a.kind == SET_VAR and a.name == "status"],
                             actions)
            # and the connection keeps working
            c.send(notify_frame(sid, fid + 1))
            self.assertStatus(self.ack_vars(c.recv_frame(), sid, fid + 1), 401)

    def test_fifty_coalesced_notifies_each_answered_once(self):
        c = self.connect()
        expected = {}
        frames = []
        for i in range(50):
            sid, fid = 1000 + i // 5, 7 * i + 1  # several frames per stream, distinct frame-ids
            if i % 3 == 0:  # deferred (503) and immediate (401) answers interleaved
                frames.append(notify_frame(sid, fid, auth="Bearer coalesced-token-%04d" % i))
                expected[(sid, fid)] = 503
            else:
                frames.append(notify_frame(sid, fid))
                expected[(sid, fid)] = 401
        c.send(b"".join(frames))
        seen = collections.Counter()
        for _ in range(50):
            f = c.recv_frame()
            v = self.ack_vars(f)
            seen[(f.sid, f.fid)] += 1
            self.assertIn((f.sid, f.fid), expected, f)
            self.assertStatus(v, expected[(f.sid, f.fid)])
        self.assertEqual(dict(seen), {k: 1 for k in expected})
        # nothing more: a NOTIFY sent now is the next frame back
        c.send(notify_frame(1, 999))
        self.ack_vars(c.recv_frame(), 1, 999)

    def test_notify_one_byte_at_a_time(self):
        c = self.connect()
        data = notify_frame(77, 1 << 33, realm="bytewise")
        for i in range(len(data)):
            c.send(data[i:i + 1])
            time.sleep(0.002)  # let the agent read the partial frame
        v = self.ack_vars(c.recv_frame(), 77, 1 << 33)
        self.assertEqual(v["www_authenticate"], Value(T_STR, 'Bearer realm="bytewise"'))

    def test_frames_split_at_awkward_boundaries(self):
        a = notify_frame(1 << 40, 1)                  # 6-byte stream-id varint
        b = notify_frame(2, (1 << 40) + 5)            # 6-byte frame-id varint
        b_fid_at = 4 + 1 + 4 + 1                      # prefix, type, flags, stream-id
        cuts = {
            "inside b's length prefix": [len(a) + 2],
            "inside a's length prefix and b's frame-id varint": [1, len(a) + b_fid_at + 3],
            "inside a's stream-id varint": [4 + 1 + 4 + 2],
            "after a's prefix, inside b's prefix, inside b's payload": [4, len(a) + 3, len(a) + 20],
        }
        for what, points in cuts.items():
            with self.subTest(what):
                c = self.connect()
                data = a + b
                prev = 0
                for p in points + [len(data)]:
                    c.send(data[prev:p])
                    prev = p
                    time.sleep(0.02)
                self.assertStatus(self.ack_vars(c.recv_frame(), 1 << 40, 1), 401)
                self.assertStatus(self.ack_vars(c.recv_frame(), 2, (1 << 40) + 5), 401)
                c.close()

    def test_frame_of_exactly_the_negotiated_size_is_accepted(self):
        size = 1024
        for pad in range(size):
            data = notify_frame(1, 2, extra=[("pad", v_str("x" * pad))])
            if len(data) - 4 == size:
                break
        self.assertEqual(len(data) - 4, size)
        v = self.roundtrip(data, 1, 2, max_frame=size)
        self.assertStatus(v, 401)

    def test_32_arguments_are_accepted(self):
        extra = [("arg%02d" % i, v_null()) for i in range(28)]
        data = notify_frame(1, 2, extra=extra)  # 4 + 28 = 32
        self.assertStatus(self.roundtrip(data, 1, 2), 401)

    def test_all_typed_data_types_in_arguments(self):
        extra = [("n", v_null()), ("b", v_bool(True)), ("i", v_int32(-5)), ("u", v_uint32(7)),
                 ("l", v_int64(-(1 << 40))), ("q", v_uint64(U64)), ("4", v_ipv4("10.1.2.3")),
                 ("6", v_ipv6("2001:db8::1")), ("s", v_str("")), ("x", v_bin(b"\x00\xff"))]
        self.assertStatus(self.roundtrip(notify_frame(1, 2, extra=extra), 1, 2), 401)

    def test_only_the_first_message_decides(self):
        payload = (message("check-token", check_token_args(auth="Bearer a b")) +
                   message("check-token", check_token_args()))
        c = self.connect()
        c.send(frame(NOTIFY, 4, 4, payload))
        self.assertStatus(self.ack_vars(c.recv_frame(), 4, 4), 400)

    def test_unknown_frame_type_is_skipped(self):
        c = self.connect()
        c.send(frame(50, 0, 0, b"\x01\x02whatever"))
        c.send(frame(50, 3, 3, b""))
        c.send(notify_frame(8, 9))
        self.assertStatus(self.ack_vars(c.recv_frame(), 8, 9), 401)

    def test_haproxy_disconnect_is_answered_status_0(self):
        c = self.connect()
        c.send(disconnect_frame(0, "normal"))
        kv = self.assertDisconnect(c, ST_NORMAL)
        self.assertEqual(set(kv), {"status-code", "message"})

    def test_haproxy_disconnect_with_an_error_status(self):
        c = self.connect()
        c.send(disconnect_frame(ST_TIMEOUT, "a timeout occurred"))
        self.assertDisconnect(c, ST_NORMAL)

    def test_peer_text_cannot_forge_log_lines(self):
        c = self.connect()
        c.send(disconnect_frame(ST_TIMEOUT, "boom\n2026-01-01T00:00:00Z error forged"))
        self.assertDisconnect(c, ST_NORMAL)
        log = self.agent.log_text()
        self.assertIn("boom?2026-01-01T00:00:00Z error forged", log)
        self.assertNotIn("\n2026-01-01T00:00:00Z error forged", log)

    def test_message_without_authorization_argument_is_401_and_said_once(self):
        c = self.connect()
        for fid in (1, 2):
            c.send(frame(NOTIFY, 9, fid, message("misconfigured", [("auth", v_str("Bearer x"))])))
            self.assertStatus(self.ack_vars(c.recv_frame(), 9, fid), 401)
        self.assertEqual(self.agent.log_text().count("has no 'authorization' argument"), 1)


class ProtocolErrors(AgentTestCase):
    """Every error ends with its DISCONNECT and a close; the agent then serves a new connection."""

    def tearDown(self):
        super().tearDown()
        self.assertAgentServes()

    def test_fin_clear_is_status_10(self):
        c = self.connect()
        c.send(notify_frame(1, 1, flags=0))
        self.assertDisconnect(c, ST_FRAG_NOT_SUPPORTED)

    def test_frame_over_the_negotiated_size_is_status_3(self):
        c = self.connect(max_frame=1024)
        c.send(struct.pack(">I", 1025) + notify_frame(1, 1)[4:12])  # announced, never sent whole
        self.assertDisconnect(c, ST_TOO_BIG)

    def test_frame_over_the_agent_size_during_hello_is_status_3(self):
        c = self.connect(hello=False)
        c.send(struct.pack(">I", 16381) + b"\x01\x00\x00")
        self.assertDisconnect(c, ST_TOO_BIG)

    def test_huge_announced_length_is_status_3(self):
        c = self.connect()
        c.send(b"\xff\xff\xff\xff")
        self.assertDisconnect(c, ST_TOO_BIG)

    def test_zero_frame_length_is_status_4(self):
        c = self.connect()
        c.send(b"\x00\x00\x00\x00")
        self.assertDisconnect(c, ST_INVALID)

    def test_frame_shorter_than_its_header_is_status_4(self):
        c = self.connect()
        c.send(b"\x00\x00\x00\x03\x03\x00\x00")
        self.assertDisconnect(c, ST_INVALID)

    def test_truncated_notify_payload_is_status_4(self):
        # authorization claims 50 bytes, 5 follow; the frame itself is complete
        payload = (enc_bytes("check-token") + b"\x02" + enc_bytes("auth_count") + v_int64(1) +
                   enc_bytes("authorization") + bytes([T_STR]) + enc_varint(50) + b"Beare")
        c = self.connect()
        c.send(frame(NOTIFY, 1, 1, payload))
        self.assertDisconnect(c, ST_INVALID)

    def test_fewer_arguments_than_announced_is_status_4(self):
        payload = enc_bytes("check-token") + b"\x03" + kvlist(check_token_args()[:2])
        c = self.connect()
        c.send(frame(NOTIFY, 1, 1, payload))
        self.assertDisconnect(c, ST_INVALID)

    def test_unknown_typed_data_type_is_status_4(self):
        c = self.connect()
        c.send(notify_frame(1, 1, auth=b"\x0a\x03abc"))
        self.assertDisconnect(c, ST_INVALID)

    def test_int32_out_of_range_is_status_4(self):
        c = self.connect()
        c.send(notify_frame(1, 1, extra=[("big", bytes([T_INT32]) + enc_varint(1 << 31))]))
        self.assertDisconnect(c, ST_INVALID)

    def test_overlong_varint_is_status_4(self):
        c = self.connect()
        body = bytes([NOTIFY]) + struct.pack(">I", FIN) + b"\xff" * 11 + b"\x00\x00"
        c.send(struct.pack(">I", len(body)) + body)
        self.assertDisconnect(c, ST_INVALID)

    def test_33_arguments_is_status_4(self):
        extra = [("arg%02d" % i, v_null()) for i in range(29)]
        c = self.connect()
        c.send(notify_frame(1, 1, extra=extra))  # 4 + 29 = 33
        self.assertDisconnect(c, ST_INVALID)

    def test_peer_resets_while_acks_are_being_written(self):
        """200 NOTIFYs (immediate and deferred answers) then an RST before reading any ACK: the
        agent meets ECONNRESET/EPIPE while writing and while answering deferred requests."""
        burst = b"".join(notify_frame(1, i, auth=None if i % 2 else "Bearer rst-token-%d" % i)
                         for i in range(200))
        for _ in range(20):
            c = self.connect()
            c.send(burst)
            c.reset()
        self.agent.check_alive()

    def test_error_after_good_frames_in_the_same_segment(self):
        """Frames before the bad one are answered; the bad one ends the connection."""
        c = self.connect()
        c.send(notify_frame(1, 1) + notify_frame(1, 2) + notify_frame(1, 3, flags=0) +
               notify_frame(1, 4))
        self.ack_vars(c.recv_frame(), 1, 1)
        self.ack_vars(c.recv_frame(), 1, 2)
        self.assertDisconnect(c, ST_FRAG_NOT_SUPPORTED)


# ---- 7, 9: with an IdP: completion order, peers that leave with requests in flight --------------

class InFlight(AgentTestCase):
    WITH_IDP = True

    def idp_call(self, method, path, doc=None):
        body = None if doc is None else json.dumps(doc).encode()
        r = harness.http_request(self.idp_port, method, path,
                                 [("Content-Type", "application/json")] if body else [], body)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def register(self, token, delay_ms=0, sub="alice"):
        self.idp_call("POST", "/_control/tokens",
                      {"token": token, "sub": sub, "scope": "openid read", "exp_in": 300,
                       "behaviour": {"delay_ms": delay_ms}})
        return token

    def idp_in_flight(self):
        return self.idp_call("GET", "/_control/stats")["in_flight"]

    def wait_idp_idle(self):
        harness.wait_until(lambda: self.idp_in_flight() == 0, 10, "the IdP to finish")

    def test_completion_order_not_arrival_order(self):
        slow = self.register("slow-order-token-0001", delay_ms=800, sub="slowpoke")
        c = self.connect()
        t0 = time.monotonic()
        c.send(notify_frame(1, 1, auth="Bearer " + slow))
        c.send(notify_frame(2, 2))
        first = c.recv_frame(timeout=5)
        t_first = time.monotonic() - t0
        self.assertEqual((first.sid, first.fid), (2, 2), "B must be answered before A")
        self.assertStatus(self.ack_vars(first), 401)
        self.assertLess(t_first, 0.6, "B waited for A's introspection")
        second = c.recv_frame(timeout=5)
        t_second = time.monotonic() - t0
        v = self.ack_vars(second, 1, 1)
        self.assertStatus(v, 200)
        self.assertGreaterEqual(t_second, 0.75, "A answered before its IdP delay")
        self.assertEqual(v["jwt"].type, T_STR)
        self.assertEqual(len(v["jwt"].value.split(".")), 3, v["jwt"])
        self.assertEqual(v["sub"], Value(T_STR, "slowpoke"))
        self.assertEqual(v["cache"], Value(T_STR, "miss"))
        self.assertNotIn("auth_error", v)
        self.assertNotIn("www_authenticate", v)

    def test_jwt_larger_than_the_negotiated_frame_is_502(self):
        big = self.idp_call("POST", "/_control/tokens", {
            "token": "big-jwt-token-0006", "sub": "alice", "exp_in": 300,
            "behaviour": {"jwt_size": 3000}}) and "big-jwt-token-0006"
        c = self.connect(max_frame=1024)
        c.send(notify_frame(1, 1, auth="Bearer " + big))
        v = self.ack_vars(c.recv_frame(timeout=5), 1, 1)
        self.assertStatus(v, 502)
        self.assertEqual(v["auth_error"], Value(T_STR, "server_error"))
        self.assertNotIn("jwt", v)
        # the same token on a connection with room for it: 200 from the cache
        c2 = self.connect(max_frame=16380)
        c2.send(notify_frame(2, 2, auth="Bearer " + big))
        v = self.ack_vars(c2.recv_frame(timeout=5), 2, 2)
        self.assertStatus(v, 200)
        self.assertGreater(len(v["jwt"].value), 2048)  # the IdP trims to at most jwt_size
        self.assertEqual(v["cache"], Value(T_STR, "hit"))

    def test_peer_resets_with_notifies_in_flight(self):
        t1 = self.register("slow-reset-token-0002", delay_ms=600)
        t2 = self.register("slow-reset-token-0003", delay_ms=600)
        c = self.connect()
        c.send(b"".join(notify_frame(1, i, auth="Bearer " + (t1 if i % 2 else t2))
                        for i in range(1, 7)))
        harness.wait_until(lambda: self.idp_in_flight() >= 2, 5, "both introspections in flight")
        c.reset()
        # a new connection works while the flights are still running, and joins one of them
        c2 = self.connect()
        c2.send(notify_frame(7, 7))
        self.assertStatus(self.ack_vars(c2.recv_frame(), 7, 7), 401)
        c2.send(notify_frame(8, 8, auth="Bearer " + t1))
        v = self.ack_vars(c2.recv_frame(timeout=5), 8, 8)
        self.assertStatus(v, 200)
        self.assertIn(v["cache"], (Value(T_STR, "coalesced"), Value(T_STR, "hit")))
        self.wait_idp_idle()
        self.agent.check_alive()
        self.assertAgentServes()

    def test_peer_half_closes_with_notifies_in_flight(self):
        """After a half-close the agent answers what it can and closes; it may drop the request
        still waiting on the IdP (HAProxy never half-closes), but it must close, not hang."""
        slow = self.register("slow-halfclose-token-0004", delay_ms=500)
        c = self.connect()
        c.send(notify_frame(1, 1, auth="Bearer " + slow) + notify_frame(1, 2))
        c.sock.shutdown(socket.SHUT_WR)
        got = {}
        while True:
            try:
                f = c.recv_frame(timeout=5)
            except EOFError:
                break
            self.assertNotIn((f.sid, f.fid), got, "answered twice")
            got[(f.sid, f.fid)] = self.ack_vars(f)
        self.assertFalse(c.buf, "a partial frame before the close")
        self.assertIn((1, 2), got, "the request without credentials was not answered")
        self.assertStatus(got[(1, 2)], 401)
        self.assertLessEqual(set(got), {(1, 1), (1, 2)})
        if (1, 1) in got:
            self.assertStatus(got[(1, 1)], 200)
        self.wait_idp_idle()
        self.agent.check_alive()
        self.assertAgentServes()

    def test_haproxy_disconnect_with_a_request_in_flight(self):
        slow = self.register("slow-disconnect-token-0005", delay_ms=400)
        c = self.connect()
        c.send(notify_frame(1, 1, auth="Bearer " + slow))
        harness.wait_until(lambda: self.idp_in_flight() >= 1, 5, "the introspection in flight")
        c.send(disconnect_frame(0, "normal"))
        self.assertDisconnect(c, ST_NORMAL)
        self.wait_idp_idle()
        self.assertAgentServes()


# ---- 10: idle timeout --------------------------------------------------------------------------

class IdleTimeout(AgentTestCase):
    AGENT_ARGS = ["--idle-timeout", "1s"]
    WITH_IDP = True  # for the request that waits on the IdP longer than the idle timeout

    def test_idle_connection_gets_status_2(self):
        c = self.connect()
        t0 = time.monotonic()
        self.assertDisconnect(c, ST_TIMEOUT, timeout=4)
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.8, "closed before the idle timeout")
        self.assertLess(elapsed, 3.0, "idle timeout far too late")

    def test_traffic_keeps_the_connection_open(self):
        c = self.connect()
        t0 = time.monotonic()
        fid = 0
        while time.monotonic() - t0 < 1.6:
            fid += 1
            c.send(notify_frame(1, fid))
            self.assertStatus(self.ack_vars(c.recv_frame(), 1, fid), 401)
            time.sleep(0.4)
        last = time.monotonic()
        self.assertDisconnect(c, ST_TIMEOUT, timeout=4)
        self.assertGreater(time.monotonic() - last, 0.5)


    def test_waiting_on_the_idp_is_not_idleness(self):
        token = "slow-idle-token-0001"
        r = harness.http_request(self.idp_port, "POST", "/_control/tokens",
                                 [("Content-Type", "application/json")],
                                 json.dumps({"token": token, "sub": "idler", "exp_in": 300,
                                             "behaviour": {"delay_ms": 1600}}).encode())
        self.assertEqual(r.status, 200, r)
        c = self.connect()
        c.send(notify_frame(1, 1, auth="Bearer " + token))
        f = c.recv_frame(timeout=5)
        self.assertEqual(f.type, ACK, "the connection timed out while a request was pending")
        self.assertStatus(self.ack_vars(f, 1, 1), 200)
        self.assertDisconnect(c, ST_TIMEOUT, timeout=4)


# ---- output back-pressure ----------------------------------------------------------------------

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class Backpressure(AgentTestCase):
    """Its own agent: when this fails, that agent has grown by the test's whole input."""

    LIMIT = 64 << 20

    def test_a_peer_that_never_reads_cannot_grow_the_agent_without_bound(self):
        """NOTIFYs pipelined by a peer that reads no ACK: once its output is stuck the agent must
        stop reading (the kernel buffers then fill and our send() stalls for good), not queue
        ACKs in memory for ever. We stop at LIMIT bytes sent or LIMIT bytes of agent growth,
        whichever comes first; both are far above what the socket buffers of both ends and any
        sane output queue hold."""
        c = self.connect()
        pid = self.agent.pid
        before = rss_kib(pid)
        batch = notify_frame(1, 1) * 4096
        c.sock.setblocking(False)
        sent = off = checked = 0
        stalled_since = None
        grown = 0
        while sent < self.LIMIT and grown < self.LIMIT >> 10:
            try:
                n = c.sock.send(batch[off:])
            except BlockingIOError:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since > 1.0:
                    break  # the agent stopped reading: back-pressure works
                time.sleep(0.01)
                continue
            stalled_since = None
            sent += n
            off = (off + n) % len(batch)
            if sent - checked > 1 << 20:
                checked = sent
                grown = rss_kib(pid) - before
        grown = rss_kib(pid) - before
        self.assertIsNotNone(stalled_since,
                             "the agent kept reading from a peer that reads nothing: %d MiB "
                             "taken, its RSS grew by %d MiB" % (sent >> 20, grown >> 10))
        self.assertLess(grown, self.LIMIT >> 10, "RSS grew by %d MiB" % (grown >> 10))


# ---- 11: mutated frames ------------------------------------------------------------------------

INTERESTING = (0x00, 0x01, 0x02, 0x03, 0x0A, 0x0F, 0x10, 0x11, 0x20, 0x21, 0x65, 0x66, 0x67,
               0x7F, 0x80, 0xEF, 0xF0, 0xFF)


def base_frames():
    """Valid NOTIFYs covering what the agent reads: every answer path, every value type."""
    return [
        notify_frame(1, 1),
        notify_frame(1, 2, auth="Basic dXNlcjpwYXNz"),
        notify_frame(1, 3, auth="Bearer a b"),
        notify_frame(1, 4, auth="Bearer fuzz-token-0001", realm="orders", scopes="read write"),
        notify_frame(1, 5, auth="Bearer fuzz-token-0002", auth_count=2),
        notify_frame(1 << 40, U64, auth=v_bin(b"Bearer fuzz-token-0003")),
        frame(NOTIFY, 3, 3, b""),
        frame(NOTIFY, 4, 4, message("check-token", check_token_args(realm="r")) +
              message("other", [("x", v_int32(-1))])),
        notify_frame(5, 5, extra=[("b", v_bool(True)), ("u", v_uint32(9)), ("q", v_uint64(1 << 60)),
                                  ("4", v_ipv4("192.0.2.1")), ("6", v_ipv6("::1"))]),
        disconnect_frame(0, "normal"),
    ]


def mutate(rng, data, bases):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        i = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[i] = rng.randrange(256)
        elif op == 2 and data:
            data[i] = rng.choice(INTERESTING)
        elif op == 3:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 4 and len(data) > 1:
            del data[i:i + rng.randint(1, 8)]
        elif op == 5:
            del data[rng.randrange(len(data) + 1):]
        elif op == 6 and data:
            j = rng.randrange(i, len(data) + 1)
            data[j:j] = data[i:j]
        elif op == 7:
            data += rng.choice(bases)
    if len(data) >= 4 and rng.random() < 0.7:  # mostly keep the length right: mutate the content
        data[0:4] = struct.pack(">I", len(data) - 4)
    return bytes(data)


class Mutations(AgentTestCase):
    CASES = 2000
    HELLO_CASES = 500
    BUDGET = 15.0  # seconds for each test

    def run_case(self, data, hello_sent):
        """data, then a half-close; reads to the end and checks every frame the agent sent.
        hello_sent: data starts after a valid HELLO, so the answer must start with AGENT-HELLO.
        Returns the outcome ("ack", "disconnect-<status>", "close", "+reset")."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got, reset = b"", False
            deadline = time.monotonic() + 5
            while True:
                s.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    reset = True
                    break
                except socket.timeout:
                    raise AssertionError("the connection neither answered nor closed in 5 s")
                if not chunk:
                    break
                got += chunk
        finally:
            s.close()
        frames, rest = split_frames(got)
        if rest and not reset:
            raise AssertionError("a partial frame before the close: %r" % rest[:64])
        if hello_sent and (not frames or frames[0].type != AGENT_HELLO):
            raise AssertionError("no AGENT-HELLO first: %r" % got[:64])
        outcome = "close"
        for n, f in enumerate(frames):
            if f.type == AGENT_HELLO:
                if n != 0:
                    raise AssertionError("AGENT-HELLO not first")
                kv = kv_dict(f.payload)
                if set(kv) != {"version", "max-frame-size", "capabilities"}:
                    raise AssertionError("bad AGENT-HELLO %r" % (kv,))
                outcome = "close-after-hello"
            elif f.type == ACK:
                if n == 0 or not f.flags & FIN or not parse_actions(f.payload):
                    raise AssertionError("bad ACK %r" % (f,))
                outcome = "ack"
            elif f.type == AGENT_DISCONNECT:
                kv = kv_dict(f.payload)
                if kv.get("status-code", Value(None, None)).type != T_UINT32:
                    raise AssertionError("bad DISCONNECT %r" % (kv,))
                if n != len(frames) - 1:
                    raise AssertionError("frames after the DISCONNECT")
                outcome = "disconnect-%d" % kv["status-code"].value
            else:
                raise AssertionError("unexpected frame %r" % (f,))
        return outcome + ("+reset" if reset else "")

    def fuzz(self, cases, make_case, hello_sent, salt):
        seed = int(os.environ.get("PTA_SPOP_SEED", "20240917")) + salt
        rng = random.Random(seed)
        outcomes = collections.Counter()
        start = time.monotonic()
        done = 0
        for case in range(cases):
            if time.monotonic() - start > self.BUDGET:
                break
            data = make_case(rng)
            try:
                outcomes[self.run_case(data, hello_sent)] += 1
            except Exception as e:  # noqa: BLE001 -- any failure: report the reproducer
                alive = self.agent.alive()
                self.fail("seed %d case %d (agent %s): %s\nbytes sent: %s"
                          % (seed, case, "alive" if alive else "DEAD", e, data.hex()))
            done += 1
            if case % 100 == 99:
                self.agent.check_alive()
        sys.stderr.write("\n  %d cases in %.1fs (seed %d): %s\n"
                         % (done, time.monotonic() - start, seed, dict(outcomes)))
        self.assertGreaterEqual(done, min(cases, 500), "too few cases within the budget")
        self.assertAgentServes()
        return outcomes

    def test_mutated_notifies_never_kill_the_agent(self):
        bases = base_frames()
        hello = hello_frame(max_frame=2048)
        outcomes = self.fuzz(self.CASES, lambda rng: hello + mutate(rng, rng.choice(bases), bases),
                             True, 0)
        self.assertGreater(outcomes["ack"], 0)
        self.assertGreater(sum(v for k, v in outcomes.items() if k.startswith("disconnect")), 0)

    def test_mutated_hellos_never_kill_the_agent(self):
        bases = [hello_frame(), HAPROXY26_HEALTHCHECK_HELLO, hello_frame(max_frame=256),
                 hello_frame(versions="1.0, 2.0", caps="async, pipelining, fragmentation"),
                 hello_frame(max_frame=v_uint64(16380), engine_id=None)]
        follow = notify_frame(1, 1)
        outcomes = self.fuzz(self.HELLO_CASES,
                             lambda rng: mutate(rng, rng.choice(bases), bases) + follow, False, 1)
        self.assertGreater(outcomes["ack"], 0)


if __name__ == "__main__":
    harness.run()
