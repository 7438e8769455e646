"""An HTTP receiver for webhook tests: records each POST, checks its signature with the
snippet of docs/webhooks.md, and can be taken down and brought back on its port."""
import http.server
import json
import threading
import time

from .procs import free_port


class Receiver:
    def __init__(self, secret, port=None, status=200):
        self.secret = secret
        self.port = port or free_port()
        self.status = status
        self.calls = []           # (headers dict, body bytes, signature ok)
        self.lock = threading.Condition()
        self.verify = None        # set by the test: verify(secret, header, body) -> bool
        self.server = None
        self.up()

    @property
    def url(self):
        return f'http://127.0.0.1:{self.port}/hooks/mailq'

    def up(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                header = self.headers.get('Mailq-Signature', '')
                ok = owner.verify(owner.secret, header, body) if owner.verify else None
                with owner.lock:
                    owner.calls.append((dict(self.headers), body, ok))
                    owner.lock.notify_all()
                self.send_response(owner.status)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'ok')

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self):
        with self.lock:
            return [json.loads(body) for _, body, _ in self.calls]

    def wait_for(self, predicate, timeout=30, what='events'):
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                events = [json.loads(body) for _, body, _ in self.calls]
                if predicate(events):
                    return events
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'timed out waiting for {what}; got '
                                         f'{[(e["type"], e["mail"]["id"]) for e in events]}')
                self.lock.wait(min(left, 0.2))
