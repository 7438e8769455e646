"""Fault 3: a Redis that keeps nothing on disk loses every queued mail on restart.
mailq must say so at start-up (worker and web) and on /healthz."""
import json
import urllib.request

from rig import Rig, record, wait_until
from support.redis_server import RedisServer

WARNING = 'Redis keeps nothing on disk'


def test_volatile_redis_is_reported_by_worker_web_and_healthz(tmp_path, smtp):
    with RedisServer(appendonly=False) as volatile:
        rig = Rig(tmp_path, volatile, smtp)
        try:
            worker, web = rig.worker('-w', '2'), rig.web()
            with urllib.request.urlopen(rig.web_url + '/healthz', timeout=5) as resp:
                health = json.loads(resp.read())
            assert health['persistence'] is False and WARNING in health['warning']
            wait_until(lambda: WARNING in rig.log(worker), 15, 'the worker warning')
            wait_until(lambda: WARNING in rig.log(web), 15, 'the web warning')
            assert 'WARNING' in [line for line in rig.log(web).splitlines()
                                 if WARNING in line][0]
        finally:
            rig.stop_all()
    record('Redis with nothing on disk', warned_worker=True, warned_web=True, healthz=True)


def test_persistent_redis_gives_no_warning(make_rig):
    rig = make_rig()
    worker, web = rig.worker('-w', '2'), rig.web()
    rig.worker_id(worker)
    with urllib.request.urlopen(rig.web_url + '/healthz', timeout=5) as resp:
        health = json.loads(resp.read())
    assert health['persistence'] is True and 'warning' not in health
    assert WARNING not in rig.log(worker) + rig.log(web)
