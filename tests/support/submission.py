"""The `mailq submission` role as a real process, and a raw-socket SMTP client that
sends exactly the bytes a test gives it (for refusal codes and smuggling)."""
import socket
import time

from .procs import PYTHON, REPO_ROOT, read_log, start_process, stop_process
from .records import record_ids


class SubmissionProcess:
    """`mailq submission`, ready once it greets; `command` runs it another way (the pyz)."""

    def __init__(self, ini, port, env=None, command=None):
        self.ini, self.port, self.env = ini, port, env
        self.command = command or [PYTHON, REPO_ROOT / 'mailq.py', 'submission', '-c', ini]
        self.proc = None
        self.start()

    def start(self, timeout=15):
        self.proc = start_process(self.command, env=self.env)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1) as s:
                    if s.recv(512).startswith(b'220'):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f'mailq submission exited: {read_log(self.proc)}')
            if time.monotonic() > deadline:
                raise AssertionError(f'mailq submission not ready: {read_log(self.proc)}')
            time.sleep(0.05)

    def log(self):
        return read_log(self.proc)

    def stop(self):
        return stop_process(self.proc)


class RawClient:
    """One SMTP session over a plain socket: send() writes bytes as given, reply() reads
    one (possibly multi-line) reply and returns its lines as text."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.buf = b''
        self.greeting = self.reply()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b'\r\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f'closed; unread {self.buf!r}')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line.decode('utf-8', 'replace')

    def reply(self):
        lines = [self.line()]
        while lines[-1][3:4] == '-':
            lines.append(self.line())
        return lines

    def cmd(self, text):
        """Send one command line; return the last reply line ('250 ...')."""
        self.send(text.encode() + b'\r\n')
        return self.reply()[-1]

    def close(self):
        self.sock.close()


def stored(client):
    """The ids of the mail records in a Redis, sorted."""
    return record_ids(client)
