"""Search indexes written by the code before the bucket layout (one sorted set per value,
commit PREVIOUS below) are found, kept up and removed by this code: nothing is migrated.

The previous code is extracted with `git archive` and run as a subprocess (cwd and
PYTHONPATH its tree), accepting mails through its own `service.send` on the test's
private Redis; then this code, in-process, works on the same Redis. The previous code
also writes after this code has (a rolling upgrade): its zset and this code's bucket
entry of one value are read together.
"""
import json
import time
from pathlib import Path

from mailq import admin, service
from mailq.config import load
from mailq.runtime import Runtime

from test_search import bucketed, no_index_left, sweep_all
from test_upgrade import OldRelease, extract_release

# The last commit whose accept.lua writes one zset per index value.
PREVIOUS = 'bcd9ab2f32732e842924218004ce713a7e9b788d'

SEND = '''
import json, sys
from mailq import service
from mailq.config import load
from mailq.runtime import Runtime
rt = Runtime(load(sys.argv[1], environ={}))
mails = json.loads(sys.argv[2])
print(json.dumps({name: service.send(rt, {'subject': name, 'text': 't', **fields})['id']
                  for name, fields in mails.items()}))
'''


def old_send(old, ini, **mails):
    """{name: mail id} of mails accepted by the previous code ({name: API fields})."""
    code = f'import sys; sys.argv = ["-", {str(ini)!r}, {json.dumps(mails)!r}]\n' + SEND
    out = old.python(code).strip().splitlines()
    return json.loads(out[-1])


def ids_of(rt, kind, value):
    rows, cursor = rt.store.index.lookup(kind, value)
    assert cursor is None
    return [row['id'] for row in rows]


def test_indexes_of_the_zset_layout_are_found_kept_up_and_removed(tmp_path, mailq_ini,
                                                                  redis_client):
    old = OldRelease(extract_release(tmp_path / 'previous', PREVIOUS))
    assert (old.root / 'mailq' / 'store' / 'search.py').is_file()
    assert 'ixb' not in (old.root / 'mailq' / 'store' / 'keys.py').read_text()
    imported = old.python('import mailq; print(mailq.__file__)').strip()
    assert Path(imported).resolve().is_relative_to(old.root.resolve()), imported

    before = old_send(old, mailq_ini,
                      ann1={'to': 'ann@example.com'}, ann2={'to': 'Ann@example.com'},
                      bob={'to': 'bob@example.com', 'idempotency_key': 'old-bob'},
                      dave={'to': 'dave@example.com'})
    rt = Runtime(load(str(mailq_ini), environ={}))
    bob_msgid = rt.store.get(before['bob']).fields['message_id'].strip('<>')
    # the previous layout: a zset per value, no bucket
    assert redis_client.zcard('mailq:ix:rcpt:ann@example.com') == 2
    for key in ('rcpt:bob@example.com', f'msgid:{bob_msgid}', 'idem:old-bob'):
        assert redis_client.zrange(f'mailq:ix:{key}', 0, -1) == [before['bob'].encode()]
    assert not redis_client.keys('mailq:ixb:*')

    # found by this code
    assert ids_of(rt, 'rcpt', 'ann@example.com') == [before['ann2'], before['ann1']]
    for kind, value in (('rcpt', 'bob@example.com'), ('msgid', bob_msgid),
                        ('idem', 'old-bob')):
        assert ids_of(rt, kind, value) == [before['bob']], kind

    # kept up: a new mail of a value with an old zset joins it
    bob2 = service.send(rt, {'to': 'bob@example.com', 'subject': 's', 'text': 't'})['id']
    assert ids_of(rt, 'rcpt', 'bob@example.com') == [bob2, before['bob']]
    assert redis_client.zcard('mailq:ix:rcpt:bob@example.com') == 2
    assert bob2 not in bucketed(redis_client, 'rcpt')

    # a rolling upgrade: this code's bucket entry, then the previous code's zset entries
    carl = service.send(rt, {'to': 'carl@example.com', 'subject': 's', 'text': 't'})['id']
    assert bucketed(redis_client, 'rcpt') == [carl]
    time.sleep(0.01)
    later = old_send(old, mailq_ini, carl={'to': 'carl@example.com'})
    carl3 = service.send(rt, {'to': 'carl@example.com', 'subject': 's', 'text': 't'})['id']
    assert ids_of(rt, 'rcpt', 'carl@example.com') == [carl3, later['carl'], carl]

    # removed with their records: Delete, the sweep after an expiry, Clear
    assert rt.store.erase('queued', [before['bob'], carl]) == [before['bob'], carl]
    assert ids_of(rt, 'rcpt', 'bob@example.com') == [bob2]
    assert not redis_client.exists(f'mailq:ix:msgid:{bob_msgid}', 'mailq:ix:idem:old-bob')
    assert ids_of(rt, 'rcpt', 'carl@example.com') == [carl3, later['carl']]
    assert carl not in bucketed(redis_client)
    redis_client.pexpire(f'mailq:m:{before["ann1"]}', 1)
    time.sleep(0.05)
    sweep_all(rt)
    assert redis_client.zrange('mailq:ix:rcpt:ann@example.com', 0, -1) == \
        [before['ann2'].encode()]
    assert admin.clear_queue(rt, 'mailers')['deleted'] == 6
    assert no_index_left(redis_client)
