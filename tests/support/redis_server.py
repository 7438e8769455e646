"""A private redis-server per test session; the shared one on 6379 is never touched."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import redis

from .procs import free_port

REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'


class RedisServer:
    """redis-server subprocess on 127.0.0.1; restart() keeps port and dir so AOF survives."""

    def __init__(self, port=None, appendonly=False, appendfsync='everysec',
                 tmpdir=None):
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self._own_dir = tmpdir is None
        self.dir = str(tmpdir or tempfile.mkdtemp(prefix='mailq-redis-'))
        self.proc = None

    @property
    def url(self):
        return 'redis://127.0.0.1:%d/0' % self.port

    def client(self, **kwargs):
        return redis.Redis(host='127.0.0.1', port=self.port, **kwargs)

    def start(self, timeout=10):
        args = [REDIS_SERVER, '--port', str(self.port), '--bind', '127.0.0.1',
                '--dir', self.dir, '--save', '',
                '--appendonly', 'yes' if self.appendonly else 'no',
                '--appendfsync', self.appendfsync,
                '--logfile', os.path.join(self.dir, 'redis.log')]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        client = self.client(socket_timeout=1)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('redis-server exited with %s, see %s/redis.log'
                                   % (self.proc.returncode, self.dir))
            try:
                if client.ping():
                    return
            except redis.exceptions.BusyLoadingError:
                pass  # still replaying the AOF
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError('redis-server on %s not ready' % self.port)
            time.sleep(0.05)
            client.close()

    def stop(self):
        """Clean shutdown: SIGTERM flushes the AOF; no RDB since --save ''.

        (SIGTERM rather than SHUTDOWN NOSAVE: redis-py retries the dropped
        connection for seconds.)
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """SIGKILL: simulate a crash (only data already in the AOF survives)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
