"""The `run` role: web and worker in one process (and the SMTP submission listener when
[submission] enabled), for one small box and development."""
import dataclasses
import logging
import threading

from .runtime import Runtime
from .web.app import bind
from .worker import EarlySignals, run_worker

log = logging.getLogger('mailq')


def run_all(config, host=None, port=None, workers=None, queues=None, worker_type=None):
    """The web server runs in a thread; the worker owns the main thread (it needs signals).
    The address is bound here first, so a bad or busy one stops `run` with a clean error."""
    EarlySignals.catch()        # the web answers before the worker has its handlers
    say_once = _SayOnce(PERSISTENCE_WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(say_once)
    serve = bind(Runtime(one_web_process(config)), host, port, place=False)   # the worker places
    listener = _submission(config)
    threading.Thread(target=serve, name='mailq-web', daemon=True).start()
    try:
        return run_worker(config, workers, queues, worker_type)
    finally:
        if listener:
            listener.stop()


def _submission(config):
    """The submission listener ([submission] enabled), bound now and served in a thread;
    stopped once the worker has stopped, so its counters reach /metrics."""
    if not config.submission.enabled:
        return None
    from .submission import bind as bind_submission
    return bind_submission(Runtime(config), main_thread=False).in_thread()


# The start of redisconn.persistence_warning(): web and worker both check at start.
PERSISTENCE_WARNING = 'Redis keeps nothing on disk'


class _SayOnce(logging.Filter):
    """Web and worker each warn at start when Redis keeps nothing on disk; in one
    process that is the same Redis, so the warning is said once."""

    def __init__(self, prefix):
        super().__init__()
        self.prefix, self.said = prefix, False

    def filter(self, record):
        if not record.getMessage().startswith(self.prefix):
            return True
        said, self.said = self.said, True
        return not said


def one_web_process(config):
    """[web] processes forks servers that set signal handlers, which only the main thread
    may do, and here the web has a thread; mailq.ini says the key is for `mailq web`."""
    if config.web.processes == 1:
        return config
    log.info('[web] processes = %d applies to `mailq web` only; `mailq run` serves the web '
             'in one process', config.web.processes)
    return config.replace(web=dataclasses.replace(config.web, processes=1))
