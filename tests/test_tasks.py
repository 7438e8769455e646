"""The stored deliver task loads as the Message Huey's deliver.s() would be, in both
forms: the short one mailq writes and Huey's JSON (written by earlier releases)."""
import json

import pytest

from mailq.config import load
from mailq.runtime import Runtime
from mailq.store.containers import task_mail_id, task_queue


@pytest.fixture
def rt(tmp_ini, redis_url):
    return Runtime(load(str(tmp_ini(redis={'url': redis_url})), environ={}))


def huey_json(rt, mail_id, queue):
    return rt.huey.serialize_task(rt.huey.deliver.s(mail_id, queue=queue))


def loads_as_huey_would(rt, task, task_id, mail_id, queue):
    loaded = rt.huey.deserialize_task(task)
    expected = rt.huey.deserialize_task(huey_json(rt, mail_id, queue))
    assert type(loaded) is type(expected)
    assert (loaded.id, loaded.name, loaded.args, loaded.kwargs, loaded.retries,
            loaded.retry_delay) == (task_id, expected.name, (mail_id,), {'queue': queue},
                                    expected.retries, expected.retry_delay)
    assert (task_mail_id(task), task_queue(task)) == (mail_id, queue)


@pytest.mark.parametrize('mail_id, queue', [('0f3a9c', 'mailers'), ('abc', 'q:with:colons')])
def test_short_task_loads_as_hueys_message(rt, mail_id, queue):
    task = rt.new_task(mail_id, queue)
    assert task.startswith('d1:') and len(task) <= 64     # fits a listpack entry
    task_id = task.split(':')[1]
    loads_as_huey_would(rt, task.encode(), task_id, mail_id, queue)


@pytest.mark.parametrize('mail_id, queue', [('id"with\\quote', 'd'), ('x', None),
                                            ('\u00e9t\u00e9', 'q\u00fc'), ('a:b', 'q')])
def test_ids_the_short_form_cannot_carry_get_hueys_json(rt, mail_id, queue):
    task = rt.new_task(mail_id, queue)
    ours = json.loads(task)
    text = huey_json(rt, mail_id, queue).decode()
    assert task.replace(ours['id'], json.loads(text)['id']) == text      # byte for byte
    loaded = rt.huey.deserialize_task(task.encode())
    assert (loaded.id, loaded.args, loaded.kwargs) == (ours['id'], (mail_id,), {'queue': queue})


def test_a_task_in_hueys_json_form_still_loads(rt):
    """A queue written before the short form holds Huey's JSON: it is delivered the same."""
    task = huey_json(rt, '0f3a9c', 'mailers')
    loads_as_huey_would(rt, task, json.loads(task)['id'], '0f3a9c', 'mailers')


def test_every_task_has_a_fresh_id(rt):
    assert len({rt.new_task('a', 'mailers') for _ in range(100)}) == 100


def test_huey_cannot_enqueue_or_schedule_a_task_without_its_record(rt, redis_client):
    """Calling the task as Huey allows (deliver(...), .schedule(...)) would store a task
    whose mail has no record: MailStorage refuses, and Redis is left as it was."""
    before = set(redis_client.scan_iter('*'))
    with pytest.raises(RuntimeError, match='store.accept'):
        rt.huey.deliver('0f3a9c', queue='mailers')
    with pytest.raises(RuntimeError, match='store.accept'):
        rt.huey.deliver.schedule(args=('0f3a9c',), kwargs={'queue': 'mailers'}, delay=60)
    with pytest.raises(RuntimeError, match='store.accept'):
        rt.huey.enqueue(rt.huey.deliver.s('0f3a9c', queue='mailers'))
    assert set(redis_client.scan_iter('*')) == before
