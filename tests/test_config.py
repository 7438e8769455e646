"""Config is parsed once, with typed values, env overrides and errors that say where."""
import random

import pytest

from mailq.config import load
from mailq.errors import ConfigError
from mailq.fetch import queue_order
from support.procs import REPO_ROOT


def test_shipped_config_loads_with_safe_defaults():
    config = load(str(REPO_ROOT / 'mailq.ini'), environ={})
    assert config.smtp.transport == 'outbox'
    assert config.web.host == '127.0.0.1' and config.web.port == 8080
    assert config.worker.concurrency == 25
    assert config.worker.queues == (('mailers', 0), ('default', 0))
    assert config.templates.path is None        # the templates shipped with mailq


def test_environment_overrides_every_key(tmp_ini):
    ini = tmp_ini(smtp={'password': 'from-file'})
    config = load(str(ini), environ={'MAILQ_SMTP_PASSWORD': 'from-env',
                                     'MAILQ_REDIS_URL': 'redis://10.0.0.1:6380/2',
                                     'MAILQ_WORKER_CONCURRENCY': '7'})
    assert config.smtp.password == 'from-env'
    assert config.redis.url == 'redis://10.0.0.1:6380/2'
    assert config.worker.concurrency == 7
    assert 'from-env' in config.secrets()


def test_config_path_from_environment(tmp_ini, monkeypatch):
    ini = tmp_ini(web={'port': '9999'})
    assert load(environ={'MAILQ_CONFIG': str(ini)}).web.port == 9999


@pytest.mark.parametrize('sections, where', [
    ({'worker': {'concurrency': '0'}}, '[worker]:concurrency'),
    ({'worker': {'queues': 'a b!'}}, '[worker]:queues'),
    ({'worker': {'default_queue': 'other'}}, '[worker]:default_queue'),
    ({'smtp': {'transport': 'carrier-pigeon'}}, '[smtp]:transport'),
    ({'smtp': {'port': '70000'}}, '[smtp]:port'),
    ({'smtp': {'verify': 'maybe'}}, '[smtp]:verify'),
    ({'web': {'username': 'ops'}}, '[web]:password'),
    ({'web': {'colour': 'blue'}}, '[web]:colour'),
    ({'redis': {'url': 'http://x'}}, '[redis]:url'),
    ({'nonsense': {'a': '1'}}, '[nonsense]'),
])
def test_bad_values_name_file_section_and_key(tmp_ini, sections, where):
    ini = tmp_ini(**sections)
    with pytest.raises(ConfigError) as err:
        load(str(ini), environ={})
    assert str(err.value).startswith(f'{ini}:{where}')


def test_bad_environment_value_is_reported_too(tmp_ini):
    with pytest.raises(ConfigError) as err:
        load(str(tmp_ini()), environ={'MAILQ_WEB_PORT': 'eighty'})
    assert '[web]:port' in str(err.value) and 'eighty' in str(err.value)


def test_queue_order_strict_and_weighted():
    assert queue_order([('a', 0), ('b', 0)]) == ['a', 'b']
    rng = random.Random(1)
    firsts = [queue_order([('a', 3), ('b', 1)], rng)[0] for _ in range(4000)]
    share = firsts.count('a') / len(firsts)
    assert 0.70 < share < 0.80      # 3:1 weights put 'a' first about 75% of the time
    assert sorted(queue_order([('a', 3), ('b', 1)], rng)) == ['a', 'b']
