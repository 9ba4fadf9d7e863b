#!/usr/bin/python3
"""Header fidelity: browser-like requests reach the API unchanged (only Authorization is
replaced), nothing from the introspection call leaks into them, and a large JWT with large
headers fits the configured buffers (tune.bufsize in haproxy.cfg)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BROWSER = [
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/124.0.0.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("Accept-Language", "en-GB,en;q=0.9,de;q=0.8"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Referer", "https://app.example.test/orders?page=2"),
    ("Origin", "https://app.example.test"),
    ("Cookie", "session=abc123; theme=dark; consent=yes"),
    ("Cache-Control", "no-cache"),
    ("Pragma", "no-cache"),
    ("Sec-Fetch-Site", "same-site"),
    ("Sec-Fetch-Mode", "cors"),
    ("Sec-Fetch-Dest", "empty"),
    ("Sec-Ch-Ua", '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"'),
    ("Sec-Ch-Ua-Mobile", "?0"),
    ("Sec-Ch-Ua-Platform", '"Linux"'),
    ("DNT", "1"),
    ("X-Requested-With", "XMLHttpRequest"),
    ("X-Request-Id", "5f0c6a1e-8b9d-4f2e-9c3a-1d2e3f4a5b6c"),
    ("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("If-None-Match", 'W/"abc123"'),
    ("Priority", "u=1, i"),
    ("Content-Type", "application/json; charset=utf-8"),
]


def browser_headers(n):
    """n browser-like headers (the real ones first, then numbered custom ones)."""
    out = list(BROWSER)
    i = 0
    while len(out) < n:
        i += 1
        out.append(("X-Custom-%02d" % i, "value %d; with=params, and, commas" % i))
    return out[:n]


class HeadersTest(harness.StackTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = cls.stack.register("opaque-headers-0001-cccc")
        cls.big = cls.stack.register("opaque-headers-big-jwt-0002",
                                     behaviour={"jwt_size": 6000})

    def forwarded(self, token, headers):
        """Sends Authorization + headers; returns (other headers as seen, the Authorization seen)."""
        r = self.stack.request(headers=[("Authorization", "Bearer " + token)] + headers)
        self.assertEqual(r.status, 200, r)
        seen = r.json()["headers"]
        auth = [v for k, v in seen if k.lower() == "authorization"]
        others = [(k, v) for k, v in seen if k.lower() not in ("authorization", "host")]
        return others, auth

    def assertSameHeaders(self, sent, seen):
        # HTTP/1 header names are case-insensitive and HAProxy 2.x lower-cases them; the values,
        # their order and their number must be exactly what the client sent.
        self.assertEqual([(k.lower(), v) for k, v in seen], [(k.lower(), v) for k, v in sent])

    def test_24_browser_headers_unchanged(self):
        sent = browser_headers(24)
        others, auth = self.forwarded(self.token, sent)
        self.assertSameHeaders(sent, others)
        self.assertEqual(len(auth), 1)

    def test_44_browser_headers_unchanged(self):
        sent = browser_headers(44)
        others, auth = self.forwarded(self.token, sent)
        self.assertSameHeaders(sent, others)
        self.assertTrue(auth[0].startswith("Bearer eyJ"))

    def test_accept_and_content_type_not_added(self):
        # The agent asks the IdP with Accept: application/jwt and a form Content-Type; neither
        # may appear in the API's request when the client sent none.
        others, _ = self.forwarded(self.token, [("X-Only", "1")])
        self.assertSameHeaders([("X-Only", "1")], others)

    def test_client_accept_and_content_type_kept(self):
        sent = [("Accept", "application/vnd.example+json; version=2"),
                ("Content-Type", "application/x-www-form-urlencoded")]
        others, _ = self.forwarded(self.token, sent)
        self.assertSameHeaders(sent, others)

    def test_big_jwt_and_ten_900_byte_headers(self):
        sent = [("X-Big-%d" % i, chr(ord("a") + i) * 900) for i in range(10)]
        others, auth = self.forwarded(self.big, sent)
        self.assertSameHeaders(sent, others)
        self.assertEqual(len(auth), 1)
        jwt = auth[0][len("Bearer "):]
        self.assertGreaterEqual(len(jwt), 5990)
        self.assertEqual(jwt.count("."), 2)

    def test_jwt_too_big_for_the_frame_is_502_never_truncated(self):
        # The negotiated frame is 16380 bytes: a 20 KB JWT cannot travel in one ACK.
        huge = self.stack.register("jwt-too-big-for-the-frame-0001",
                                   behaviour={"jwt_size": 20000})
        r = self.stack.get(huge)
        self.assertEqual(r.status, 502, r)
        self.assertEqual(r.json()["code"], "server_error")
        self.assertIn("does not fit the negotiated max-frame-size", self.stack.log("agent"))

    def test_big_jwt_is_whole(self):
        # The same JWT comes back from the cache: both requests must carry identical bytes.
        _, first = self.forwarded(self.big, [])
        _, second = self.forwarded(self.big, [])
        self.assertEqual(first, second)


if __name__ == "__main__":
    harness.run()
