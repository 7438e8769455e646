"""Every cron job error fails at start-up (config load, worker and web start, `mailq
check`) and names the section and key."""
import pytest

from cron_fixtures.helpers import cron_ini, tick_job
from mailq.config import load
from mailq.cron.imports import resolve
from mailq.cron.validate import check_runtime
from mailq.errors import ConfigError
from mailq.runtime import Runtime
from mailq.startup import validate_startup
from support.mailq_app import run_cli
from support.procs import REPO_ROOT

CALLABLE = 'cron_fixtures.digest:digest'


def load_error(tmp_path, jobs, **sections):
    ini = cron_ini(tmp_path, 'redis://127.0.0.1:1/0', jobs, **sections)
    with pytest.raises(ConfigError) as info:
        validate_startup(load(str(ini), environ={}))
    return info.value


def runtime_error(tmp_path, jobs, **sections):
    config = load(str(cron_ini(tmp_path, 'redis://127.0.0.1:1/0', jobs, **sections)),
                  environ={})
    with pytest.raises(ConfigError) as info:
        check_runtime(Runtime(config))
    return info.value


@pytest.mark.parametrize('job, key, message', [
    (tick_job('61 * * * *'), 'schedule', 'minute 61 is out of range 0-59'),
    (tick_job('0 8 * * funday'), 'schedule', "unknown day-of-week name 'funday'"),
    (tick_job('0 8 * *'), 'schedule', 'has 4 fields, expected 5'),
    (tick_job('@fortnightly'), 'schedule', "unknown alias '@fortnightly'"),
    (tick_job(''), 'schedule', 'is required'),
    (tick_job(timezone='Europe/Atlantis'), 'timezone', "unknown timezone 'Europe/Atlantis'"),
    (tick_job(context='{"team": '), 'context', 'allowed: a JSON object'),
    (tick_job(context='[1, 2]'), 'context', 'must be a JSON object'),
    ({'schedule': '@daily', 'to': 'ops@example.com'}, 'template',
     'give template (with to) or callable'),
    ({'schedule': '@daily', 'template': 'tick', 'to': 'a@example.com', 'callable': CALLABLE},
     'callable', 'give template or callable, not both'),
    ({'schedule': '@daily', 'template': 'tick'}, 'to', 'is required for a template job'),
    ({'schedule': '@daily', 'callable': CALLABLE, 'to': 'a@example.com'}, 'to',
     'only used with template'),
    ({'schedule': '@daily', 'callable': 'no colon'}, 'callable', 'package.module:function'),
    (tick_job(queue='urgent'), 'queue', "unknown queue 'urgent' (known: mailers, default)"),
    (tick_job(catch_up='-5'), 'catch_up', 'must be >= 0'),
    (tick_job(catch_up='86401'), 'catch_up', 'must be at most [limits] idempotency_ttl (86400)'),
    (tick_job(every='5'), 'every', 'unknown key'),
])
def test_config_load_names_section_and_key(tmp_path, job, key, message):
    error = load_error(tmp_path, {'nightly': job})
    assert (error.section, error.key) == ('cron:nightly', key)
    assert message in str(error)
    assert str(error).startswith(f'{tmp_path / "mailq.ini"}:[cron:nightly]:{key}: ')


def test_bad_default_timezone_and_bad_job_names(tmp_path):
    error = load_error(tmp_path, {'a': tick_job()}, cron={'timezone': 'Mars/Olympus'})
    assert (error.section, error.key) == ('cron', 'timezone')
    error = load_error(tmp_path, {'no spaces please': tick_job()})
    assert error.section == 'cron:no spaces please' and 'bad job name' in str(error)


@pytest.mark.parametrize('job, key, message', [
    (tick_job(template='no_such_template'), 'template', "unknown template 'no_such_template'"),
    (tick_job(to='not an address'), 'to', 'not a valid address'),
    ({'schedule': '@daily', 'callable': 'cron_fixtures.missing:build'}, 'callable',
     "cannot import 'cron_fixtures.missing'"),
    ({'schedule': '@daily', 'callable': 'cron_fixtures.digest:nope'}, 'callable',
     "has no 'nope'"),
    ({'schedule': '@daily', 'callable': 'cron_fixtures.digest:NOT_CALLABLE'}, 'callable',
     'is not callable'),
    ({'schedule': '@daily', 'callable': 'cron_fixtures.digest:no_arguments'}, 'callable',
     'must take one argument'),
])
def test_runtime_checks_name_section_and_key(tmp_path, job, key, message):
    error = runtime_error(tmp_path, {'nightly': job})
    assert (error.section, error.key) == ('cron:nightly', key)
    assert message in str(error)


def test_a_template_that_needs_more_context_fails_at_start(tmp_path):
    (tmp_path / 'templates').mkdir()
    (tmp_path / 'templates' / 'needs.subject').write_text('Hi {{ user.name }}')
    (tmp_path / 'templates' / 'needs.txt').write_text('x')
    error = runtime_error(tmp_path, {'nightly': tick_job(template='needs')})
    assert (error.section, error.key) == ('cron:nightly', 'template')
    assert "'user' is undefined" in str(error)


def test_imports_that_fail_name_the_mailq_section(tmp_path):
    error = runtime_error(tmp_path, {}, mailq={'imports': 'cron_fixtures.digest, nowhere.at_all'})
    assert (error.section, error.key) == ('mailq', 'imports')
    assert "cannot import 'nowhere.at_all'" in str(error)


def test_modules_next_to_the_config_file_are_importable(tmp_path):
    (tmp_path / 'mydigest.py').write_text('def build(fired_at):\n    return []\n')
    config = load(str(cron_ini(tmp_path, 'redis://127.0.0.1:1/0', {
        'digest': {'schedule': '@daily', 'callable': 'mydigest:build'}},
        mailq={'imports': 'mydigest'})), environ={})
    check_runtime(Runtime(config))
    assert resolve('mydigest:build', config)(None) == []


def test_the_shipped_config_and_its_sample_job_are_valid(tmp_path):
    shipped = (REPO_ROOT / 'mailq.ini').read_text()
    assert load(str(REPO_ROOT / 'mailq.ini'), environ={}).cron_jobs == ()
    sample = '\n'.join(line[2:] if line.startswith('; ') and not line.startswith('; ;')
                       and ('=' in line or line.startswith('; [cron:')) else line
                       for line in shipped.split('[cron]', 1)[1].splitlines())
    ini = tmp_path / 'sample.ini'
    ini.write_text(shipped.split('[cron]', 1)[0] + '[cron]' + sample)
    [job] = load(str(ini), environ={}).cron_jobs
    assert (job.name, job.schedule, job.timezone, job.template) == (
        'daily-report', '0 8 * * mon-fri', 'Europe/Berlin', 'daily_report')
    assert job.context == {'team': 'ops'} and job.catch_up == 3600
    check_runtime(Runtime(load(str(ini), environ={})))


def test_check_worker_and_web_refuse_a_bad_job(tmp_path, redis_url):
    ini = cron_ini(tmp_path, redis_url, {'nightly': tick_job('0 25 * * *')})
    result = run_cli(ini, 'check')
    assert result.returncode == 2
    assert '[cron:nightly]:schedule: ' in result.stderr and 'hour 25' in result.stderr
    ini = cron_ini(tmp_path, redis_url, {'nightly': tick_job(template='gone')}, name='b.ini')
    result = run_cli(ini, 'check')
    assert result.returncode == 1
    assert "cron       FAIL" in result.stdout
    assert "[cron:nightly]:template: unknown template 'gone'" in result.stdout
    for role in ('worker', 'web'):
        result = run_cli(ini, role, timeout=30)
        assert result.returncode == 2, result.stderr
        assert "config error" in result.stderr and "[cron:nightly]:template" in result.stderr
