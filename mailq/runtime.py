"""Wire a Config into the shared objects every role uses.

One Runtime per process: one Redis connection pool, one Store, one set of
mail templates, one Huey instance. The worker adds a transport and processor.
"""
import functools

import redis

from .redisconn import connection_pool
from .store import Keys, Store
from .tasks import create_huey, new_task
from .templates import MailTemplates


class Runtime:
    """`processor`, for a worker: a function of the Runtime that builds its Processor."""

    def __init__(self, config, processor=None):
        self.config = config
        self.pool = connection_pool(config.redis.url)
        self.redis = redis.Redis(connection_pool=self.pool)
        self.keys = Keys(config.redis.prefix)
        self.store = Store(self.redis, self.keys, config)
        self.templates = MailTemplates(config.templates.path, config.limits.render_timeout)
        self.processor = processor(self) if processor else None
        self.huey = create_huey(self.store, self.pool, config.worker.queues, self.processor)

    def new_task(self, mail_id, queue):
        return new_task(self.huey, mail_id, queue)


@functools.lru_cache(maxsize=None)
def default_runtime(config_path=None):
    """The Runtime for the Python API (`mailq.send`), built once per process."""
    from .config import load
    return Runtime(load(config_path))
