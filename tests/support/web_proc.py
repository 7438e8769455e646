"""A real `mailq.py web` process on a free port, and a raw HTTP client for it."""
import http.client
import json
import sys

from .procs import REPO_ROOT, free_port, start_process, stop_process, wait_http


class WebProcess:
    def __init__(self, ini, *flags):
        self.port = free_port()
        self.proc = start_process([sys.executable, REPO_ROOT / 'mailq.py', 'web', '-c', ini,
                                   '--port', self.port, *flags])
        self.url = f'http://127.0.0.1:{self.port}'
        wait_http(self.url + '/healthz')

    def request(self, method, path, body=None, headers=None, timeout=20):
        """(status, headers dict, parsed JSON or None) of one raw request."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, bytes):
                body = json.dumps(body).encode()
            conn.request(method, path, body=body,
                         headers={'Content-Type': 'application/json', **(headers or {})})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def stop(self):
        stop_process(self.proc)
