"""Run mailq's own roles for tests: the web app in a thread, workers as processes."""
import json
import threading
import urllib.error
import urllib.request

import waitress

from mailq.config import load
from mailq.runtime import Runtime
from mailq.web.app import create_app

from .procs import PYTHON, REPO_ROOT, start_process, stop_process


class WebApp:
    """`mailq web` served by waitress in a background thread on a free port."""

    def __init__(self, ini, environ=None):
        self.config = load(str(ini), environ=environ or {})
        self.runtime = Runtime(self.config)
        self.server = waitress.create_server(create_app(self.runtime), host='127.0.0.1',
                                             port=0, threads=4)
        self.url = f'http://127.0.0.1:{self.server.effective_port}'
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            self.server.run()
        except (OSError, ValueError):
            if not self.closing:      # the loop trips over its closed sockets on close()
                raise

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, headers, parsed JSON or text). `body` is sent as JSON, `raw` as bytes."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={'Content-Type': 'application/json',
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return resp.status, resp.headers, _parse(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, _parse(exc)

    def post(self, path, body=None, **kw):
        return self.request('POST', path, body, **kw)

    def get(self, path, **kw):
        return self.request('GET', path, **kw)

    def close(self):
        """Its threads end first: a live stream's thread that outlived the server would
        write its wake-up byte to the server's closed trigger pipe, whose descriptor
        number may by then be a Redis connection's (seen: 'unknown command xx*2')."""
        self.closing = True
        dispatcher = self.server.task_dispatcher
        dispatcher.shutdown(timeout=10)
        if dispatcher.threads:          # a stream still open: its pipe stays open too
            waitress.wasyncore.dispatcher.close(self.server)
        else:
            self.server.close()


def _parse(resp):
    text = resp.read().decode('utf-8', 'replace')
    if 'json' in (resp.headers.get('Content-Type') or ''):
        return json.loads(text)
    return text


def start_worker(ini, *args, env=None):
    """`python mailq.py worker -c INI ARGS...` as a subprocess (see procs.stop_process)."""
    return start_process([PYTHON, REPO_ROOT / 'mailq.py', 'worker', '-c', ini, *args], env=env)


def run_cli(ini, *args, env=None, timeout=60):
    import subprocess
    return subprocess.run([PYTHON, str(REPO_ROOT / 'mailq.py'), *args, '-c', str(ini)],
                          capture_output=True, text=True, timeout=timeout, cwd=str(REPO_ROOT),
                          env=env)


__all__ = ['WebApp', 'start_worker', 'run_cli', 'stop_process']
