"""A private redis-server with extra command-line settings (busy threshold, debug
commands, a slow RDB load...), for tests that need Redis in an odd state.

Like RedisServer (whose start() it extends with `extra` arguments); never the shared
server on 6379.
"""
import os
import subprocess

from .redis_server import REDIS_SERVER, RedisServer


class TunedRedisServer(RedisServer):
    def __init__(self, *extra, rdb=False, **kwargs):
        super().__init__(**kwargs)
        self.extra = [str(a) for a in extra]
        self.rdb = rdb          # load (and SAVE to) dir/dump.rdb instead of --save ''

    def start(self, timeout=10, wait=True):
        args = [REDIS_SERVER, '--port', str(self.port), '--bind', '127.0.0.1',
                '--dir', self.dir, '--dbfilename', 'dump.rdb' if self.rdb else 'none.rdb',
                '--save', '',
                '--appendonly', 'yes' if self.appendonly else 'no',
                '--logfile', os.path.join(self.dir, 'redis.log'), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if wait:
            self._wait_ready(timeout)
        return self
