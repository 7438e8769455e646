"""Config is parsed once, with typed values, env overrides and errors that say where."""
import random

import pytest

from mailq.config import load
from mailq.redisconn import redacted_url
from mailq.startup import validate_startup
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
    ({'smtp': {'from': 'mailq'}}, '[smtp]:from'),
    ({'smtp': {'from': 'a@example.com, b@example.com'}}, '[smtp]:from'),
    ({'nonsense': {'a': '1'}}, '[nonsense]'),
])
def test_bad_values_name_file_section_and_key(tmp_ini, sections, where):
    ini = tmp_ini(**sections)
    with pytest.raises(ConfigError) as err:
        validate_startup(load(str(ini), environ={}))
    assert str(err.value).startswith(f'{ini}:{where}')


@pytest.mark.parametrize('environ, message', [
    ({'MAILQ_WEB_PORT': 'eighty'}, "$MAILQ_WEB_PORT: bad value 'eighty': must be a whole number"),
    ({'MAILQ_WEB_HOSTT': '0.0.0.0'}, "$MAILQ_WEB_HOSTT: unknown key 'hostt'"),
    ({'MAILQ_SMTP_FROM': 'mailq'}, "$MAILQ_SMTP_FROM: not a valid address: 'mailq'"),
    ({'MAILQ_WORKER_DEFAULT_QUEUE': 'other'}, "$MAILQ_WORKER_DEFAULT_QUEUE: 'other' is not"),
])
@pytest.mark.parametrize('with_file', [True, False])
def test_bad_environment_value_names_the_variable_not_the_file(tmp_ini, tmp_path, monkeypatch,
                                                               environ, message, with_file):
    monkeypatch.chdir(tmp_path)         # no ./mailq.ini unless with_file writes one
    if with_file:
        tmp_ini(web={'port': '8081'}, smtp={'from': 'ok@example.com'})
    with pytest.raises(ConfigError) as err:
        validate_startup(load(environ=environ))
    assert str(err.value).startswith(message)
    assert 'mailq.ini' not in str(err.value)


def test_sender_with_a_display_name_is_accepted(tmp_ini):
    config = load(str(tmp_ini(smtp={'from': 'Mail Q <mailq@example.com>'})), environ={})
    assert config.smtp.sender == 'Mail Q <mailq@example.com>'


@pytest.mark.parametrize('password', ['ab ;cd', 'ab #cd', 'ab;cd#ef'])
def test_comments_are_whole_lines_so_secrets_keep_their_semicolons(tmp_path, password):
    ini = tmp_path / 'mailq.ini'
    ini.write_text(f'; a comment\n[smtp]\n# another\npassword = {password}\n')
    assert load(str(ini), environ={}).smtp.password == password


def test_shipped_config_has_no_comment_after_a_value():
    for line in (REPO_ROOT / 'mailq.ini').read_text().splitlines():
        if line.strip() and not line.lstrip().startswith((';', '#', '[')):
            assert ';' not in line and '#' not in line, line


def test_shipped_config_names_every_redis_url_scheme():
    text = (REPO_ROOT / 'mailq.ini').read_text()
    url_comment = text[text.index('[redis]'):text.index('\nurl =')]
    for scheme in ('redis://', 'rediss://', 'unix://', 'redis+sentinel://'):
        assert scheme in url_comment


@pytest.mark.parametrize('url, shown', [
    ('redis://:s3cret@host:1/0', 'redis://:***@host:1/0'),
    ('redis://user:s3cret@host/0', 'redis://user:***@host/0'),
    ('rediss://user:s3%40cret@host', 'rediss://user:***@host'),
    ('redis+sentinel://:s3cret@h1:1,h2:2/mq/0', 'redis+sentinel://:***@h1:1,h2:2/mq/0'),
    ('redis://:s3/cr?et@host:1/0', 'redis://:***@host:1/0'),       # unencoded / and ?
    ('unix:///run/redis.sock?db=1&password=s3cret', 'unix:///run/redis.sock?db=1&password=***'),
    ('redis://127.0.0.1:6379/0', 'redis://127.0.0.1:6379/0'),
])
def test_redis_url_is_shown_without_its_password(url, shown):
    assert redacted_url(url) == shown
    assert 's3' not in redacted_url(url)


def test_every_spelling_of_the_redis_password_is_a_secret(tmp_ini):
    config = load(str(tmp_ini(redis={'url': 'redis://u:s3%40cret@host/0'})), environ={})
    assert {'s3%40cret', 's3@cret'} <= set(config.secrets())


def test_queue_order_strict_and_weighted():
    assert queue_order([('a', 0), ('b', 0)]) == ['a', 'b']
    rng = random.Random(1)
    firsts = [queue_order([('a', 3), ('b', 1)], rng)[0] for _ in range(4000)]
    share = firsts.count('a') / len(firsts)
    assert 0.70 < share < 0.80      # 3:1 weights put 'a' first about 75% of the time
    assert sorted(queue_order([('a', 3), ('b', 1)], rng)) == ['a', 'b']


def test_a_webhook_secret_can_come_from_the_environment(tmp_ini):
    """MAILQ_WEBHOOK_<NAME>_<KEY>: the secret stays out of the file; '-' and '.' of the
    name are '_', and the longest name that matches wins."""
    ini = tmp_ini(**{'webhook:app': {'url': 'http://127.0.0.1:9/hook'},
                     'webhook:app-b': {'url': 'http://127.0.0.1:9/b', 'secret': 'in-file'}})
    with pytest.raises(ConfigError, match='secret'):
        load(str(ini), environ={})
    hooks = {h.name: h for h in load(str(ini), environ={
        'MAILQ_WEBHOOK_APP_SECRET': 's3cret', 'MAILQ_WEBHOOK_APP_B_SECRET': 'from-env',
        'MAILQ_WEBHOOK_APP_TIMEOUT': '3'}).webhooks}
    assert hooks['app'].secret == 's3cret' and hooks['app'].timeout == 3.0
    assert hooks['app-b'].secret == 'from-env'
    with pytest.raises(ConfigError, match=r'\$MAILQ_WEBHOOK_APP_TIMEOUT'):
        load(str(ini), environ={'MAILQ_WEBHOOK_APP_SECRET': 's', 'MAILQ_WEBHOOK_APP_TIMEOUT': 'x'})
    with pytest.raises(ConfigError, match=r'\$MAILQ_WEBHOOK_OTHER_SECRET.*no \[webhook:NAME\]'):
        load(str(ini), environ={'MAILQ_WEBHOOK_APP_SECRET': 's', 'MAILQ_WEBHOOK_OTHER_SECRET': 's'})
