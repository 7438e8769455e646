"""The hand-written deliver task is exactly what Huey would serialize, and loads back."""
import json

import pytest

from mailq.config import load
from mailq.runtime import Runtime


@pytest.fixture
def rt(tmp_ini, redis_url):
    return Runtime(load(str(tmp_ini(redis={'url': redis_url})), environ={}))


@pytest.mark.parametrize('mail_id, queue', [('0f3a9c', 'mailers'), ('id"with\\quote', 'd'),
                                            ('x', None), ('\u00e9t\u00e9', 'q\u00fc')])
def test_new_task_matches_huey_serialization(rt, mail_id, queue):
    task = rt.new_task(mail_id, queue)
    ours = json.loads(task)
    text = rt.huey.serialize_task(rt.huey.deliver.s(mail_id, queue=queue)).decode()
    assert task.replace(ours['id'], json.loads(text)['id']) == text      # byte for byte
    loaded = rt.huey.deserialize_task(task.encode())
    assert type(loaded) is type(rt.huey.deliver.s(mail_id))
    assert (loaded.id, loaded.args, loaded.kwargs) == (ours['id'], (mail_id,), {'queue': queue})


def test_every_task_has_a_fresh_id(rt):
    assert len({json.loads(rt.new_task('a', 'mailers'))['id'] for _ in range(100)}) == 100
