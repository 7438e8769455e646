"""Postfix's smtp-sink as the SMTP server, counting accepted mails as they arrive.

smtp-sink -c prints `sess=N quit=N mesg=N` (CR-separated) each time a "." is
accepted; a reader thread stamps each new count, so throughput is measured at
the sink, from the first to the last accepted message, for mailq and the
baseline alike.
"""
import os
import pty
import re
import socket
import subprocess
import threading
import time

SMTP_SINK = '/usr/sbin/smtp-sink'
COUNTER = re.compile(rb'mesg=(\d+)')


class SMTPSink:
    def __init__(self, port):
        self.port = port
        self.proc = None
        self.count = 0
        self.stamps = []          # (monotonic time, count) at each change
        self.changed = threading.Condition()

    def start(self):
        args = [SMTP_SINK, '-c', '-m', '512']
        if os.geteuid() == 0:
            args += ['-u', 'nobody']           # smtp-sink refuses to run as root
        args += [f'127.0.0.1:{self.port}', '1024']
        # smtp-sink buffers its counter when writing to a pipe, not to a terminal
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdout=slave, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        os.close(slave)
        self.master = master
        threading.Thread(target=self._read, name='sink-reader', daemon=True).start()
        self._wait_listening()
        return self

    def _wait_listening(self, timeout=15):
        """A client started right after (smtp-source, which gives up on a refused
        connection) must find the port open."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f'smtp-sink is not listening on {self.port}')
                time.sleep(0.05)

    def _read(self):
        buffer = b''
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:       # EIO: smtp-sink exited
                return
            if not chunk:
                return
            now = time.monotonic()
            buffer += chunk
            *updates, buffer = buffer.split(b'\r')
            counts = [int(m.group(1)) for u in updates for m in [COUNTER.search(u)] if m]
            if counts and counts[-1] != self.count:
                with self.changed:
                    self.count = counts[-1]
                    self.stamps.append((now, self.count))
                    self.changed.notify_all()

    def mark(self):
        """The count now; pass it to `wait_for` as the start of a run."""
        return self.count

    def wait_for(self, start, n, timeout, sender=None):
        """Wait until n more mails than `start` were accepted; with `sender` (a Popen),
        stop waiting once it has exited and the count stood still for 5 s after.
        Returns (first accept, last accept) times, or raises TimeoutError."""
        deadline, still = time.monotonic() + timeout, None
        with self.changed:
            while self.count < start + n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f'sink got {self.count - start} of {n} mails '
                                       f'in {timeout:.0f}s')
                if sender is not None and sender.poll() is not None:
                    if still is None or still[0] != self.count:
                        still = (self.count, time.monotonic())
                    elif time.monotonic() - still[1] > 5:
                        raise TimeoutError(f'{sender.args[0]} exited ({sender.returncode}) '
                                           f'with {self.count - start} of {n} mails at the sink')
                self.changed.wait(min(left, 1.0))
            stamps = list(self.stamps)
        first = next(t for t, c in stamps if c > start)
        last = next(t for t, c in stamps if c >= start + n)
        return first, last

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
