"""Serve a conda channel folder over HTTP on loopback, for the tests and benchmarks.

Usage: python3 tests/services/conda-channel.py PORT DIR [no-cache]

Like `python3 -m http.server --bind 127.0.0.1 PORT --directory DIR`, but every GET is answered in full:
http.server's 304 replies carry no Last-Modified or ETag, so an HTTP cache (rattler's repodata gateway)
cannot match them to what it holds and rejects them once its cached entry is stale.
With `no-cache`, every answer says `Cache-Control: no-cache`, for a test that changes the channel
while a client holds its repodata.
"""

import functools
import http.server
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        for header in ("If-Modified-Since", "If-None-Match"):
            del self.headers[header]
        super().do_GET()

    def end_headers(self):
        if NO_CACHE:
            self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, *args):
        pass


port, directory = int(sys.argv[1]), sys.argv[2]
NO_CACHE = sys.argv[3:] == ["no-cache"]
handler = functools.partial(Handler, directory=directory)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
