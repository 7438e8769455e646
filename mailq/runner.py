"""The `run` role: web and worker in one process, for one small box and development."""
import logging
import threading

from .runtime import Runtime
from .web.app import serve
from .worker import run_worker

log = logging.getLogger('mailq')


def run_all(config, host=None, port=None, workers=None, queues=None, worker_type=None):
    """The web server runs in a thread; the worker owns the main thread (it needs signals)."""
    from .web.app import check_bind
    check_bind(config.web, host or config.web.host)
    web = threading.Thread(target=serve, args=(Runtime(config), host, port), name='mailq-web',
                           daemon=True)
    web.start()
    return run_worker(config, workers, queues, worker_type)
