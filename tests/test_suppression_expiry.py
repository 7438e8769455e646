"""Issue 14 leftover: a suppression whose end date has passed is deleted (matching
already ignored it), by the worker tick's step through the list; one without an end
date, or suppressed again since, stays. Real Redis, the store's own calls."""
import time
from types import SimpleNamespace

from mailq import suppression
from mailq.config import load
from mailq.runtime import Runtime


def test_ended_suppressions_are_deleted_on_the_tick(mailq_ini, redis_client):
    rt = Runtime(load(str(mailq_ini), environ={}))
    config = SimpleNamespace(policy=False, days=30)
    month_ago = time.time() - 31 * 86400
    ended = suppression.automatic({'old@example.com': (550, '5.1.1 no such user')}, 'm1',
                                  config, month_ago)
    current = suppression.automatic({'new@example.com': (550, '5.1.1 no such user')}, 'm2',
                                    config, time.time())
    rt.store.suppressions.add({**ended, **current}, time.time())
    suppression.add(rt, 'manual@example.com')
    assert redis_client.hlen('mailq:suppressed') == 3
    rt.store.trim()
    assert sorted(redis_client.hkeys('mailq:suppressed')) == [b'manual@example.com',
                                                              b'new@example.com']
    assert redis_client.zscore('mailq:suppressed:order', 'old@example.com') is None
    assert rt.store.suppressions.expire_step(time.time()) == 0      # once a minute at most
