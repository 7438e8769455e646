"""The data layer (mailq/store/): key names, the states table, and that every Lua
script touches only the keys it is given in KEYS."""
import json
import re
import time
from pathlib import Path

import pytest
import redis

from mailq import admin, service
from mailq.compose import compose
from mailq.config import load
from mailq.runtime import Runtime
from mailq.store import scripts as store_scripts
from mailq.store import states
from mailq.store.containers import task_mail_id
from mailq.store.keys import Keys

MAILQ = Path(__file__).resolve().parent.parent / 'mailq'

# Every redis.call of a script goes through this check in the tests below: a key
# that did not come in through KEYS is an error raised inside Redis.
CHECKED_CALL = '''
local declared = {}
for _, k in ipairs(KEYS) do declared[k] = true end
local function checked_call(cmd, ...)
  local args = {...}
  local upper = string.upper(cmd)
  local positions = {1}
  if upper == 'DEL' then
    positions = {}
    for i = 1, #args do positions[i] = i end
  elseif upper == 'LMOVE' then
    positions = {1, 2}
  end
  for _, p in ipairs(positions) do
    if args[p] ~= nil and not declared[args[p]] then
      error('undeclared key ' .. tostring(args[p]) .. ' in ' .. upper)
    end
  end
  return redis.call(cmd, ...)
end
'''


SOURCE = store_scripts.source


def checked_source(name):
    """A script's source with every redis.call checked against its KEYS."""
    text = SOURCE(name)
    return CHECKED_CALL + text.replace('redis.call(', 'checked_call(')


@pytest.fixture
def checked_rt(mailq_ini, monkeypatch):
    """A Runtime whose scripts are checked, and which notes each script it runs."""
    return checked_runtime(mailq_ini, monkeypatch)


def checked_runtime(ini, monkeypatch):
    """A Runtime on `ini` whose every script is checked and noted when it runs."""
    monkeypatch.setattr(store_scripts, 'source', checked_source)
    rt = Runtime(load(str(ini), environ={}))
    rt.scripts_run = set()
    for name in store_scripts.NAMES:
        setattr(rt.store.scripts, name, _noting(rt.scripts_run, name,
                                                getattr(rt.store.scripts, name)))
    return rt


class _noting:
    """A script that notes its name in `seen` each time it runs."""

    def __init__(self, seen, name, script):
        self.seen, self.name, self.script = seen, name, script

    def __call__(self, *args, **kwargs):
        self.seen.add(self.name)
        return self.script(*args, **kwargs)

    def run_each(self, calls):
        self.seen.add(self.name)
        return self.script.run_each(calls)

    def run_all(self, calls):
        self.seen.add(self.name)
        return self.script.run_all(calls)


def send(rt, **extra):
    return service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't', **extra})['id']


def finish(rt, mail_id, task, worker, outcome, **kw):
    attempt = {'at': time.time(), 'worker': worker, 'outcome': outcome, 'code': 250,
               'reply': 'ok', 'duration': 0.01}
    return rt.store.finish(mail_id, task, worker, 't1', outcome, attempt, **kw)[0]


def test_accept_each_checks_its_keys_and_runs_each_once_after_a_script_flush(
        checked_rt, redis_client):
    """The submission listener's pipelined accept runs the checked accept.lua by its
    sha; a Redis that lost its script cache (a restart) has it loaded and runs each
    mail exactly once."""
    rt = checked_rt
    message = b'From: app@example.com\r\nSubject: s\r\n\r\nbody\r\n'
    items = [service.prepare_message(rt, message, 'app@example.com', [f'r{n}@example.com'])
             for n in range(3)]
    redis_client.script_flush()
    results = rt.store.accept_each(items)
    assert [(r.id, r.new) for r in results] == [(m.id, True) for m, _, _ in items]
    assert rt.store.queue('mailers').size() == 3
    keyed = b'X-Mailq-Idempotency-Key: once\r\n' + message
    again = [service.prepare_message(rt, keyed, 'app@example.com', ['a@example.com'])
             for _ in range(2)]
    first, second = rt.store.accept_each(again)
    assert first.new and not second.new and second.id == first.id
    assert rt.store.queue('mailers').size() == 4


def test_a_batch_is_one_transaction_that_survives_a_script_flush_and_errors(
        checked_rt, redis_client):
    """accept_all without idempotency keys: one MULTI/EXEC packed by hiredis (run_all),
    the checked accept.lua by its sha, after SCRIPT FLUSH too; an error reply raises,
    whether the command was refused when queued (EXEC aborts: nothing ran) or failed
    in EXEC, and the pooled connection is left clean for the next call."""
    rt = checked_rt
    mails = [compose({'to': f'r{n}@example.com', 'subject': 's', 'text': 't'},
                     config=rt.config, templates=rt.templates) for n in range(3)]
    items = [(m, rt.new_task(m.id, m.queue), '') for m in mails]
    redis_client.script_flush()
    assert [(r.id, r.new) for r in rt.store.accept_all(items)] == [(m.id, True) for m in mails]
    assert rt.store.queue('mailers').size() == 3
    direct = rt.store.scripts.accept.script        # the DirectScript inside _noting
    if store_scripts.pack_command is not None:
        packed = [store_scripts.pack('MULTI'), store_scripts.pack('SET', 'mailq:x', '1'),
                  store_scripts.pack('NO-SUCH-COMMAND'), store_scripts.pack('EXEC')]
        with pytest.raises(redis.ResponseError, match='unknown command'):
            direct._on_connection(lambda conn: store_scripts._transaction(conn, packed))
        assert not redis_client.exists('mailq:x')
    with pytest.raises(redis.ResponseError):
        direct.run_all([([], [])])                      # accept.lua fails without KEYS
    assert send(rt) and rt.store.queue('mailers').size() == 4


def test_the_checker_catches_a_key_that_is_not_in_keys(redis_client):
    """The control for the test below: the same wrapping refuses an undeclared key."""
    script = redis_client.register_script(CHECKED_CALL.replace('redis.call(', 'checked_call(')
                                          + "return checked_call('GET', 'mailq:elsewhere')")
    with pytest.raises(redis.ResponseError, match='undeclared key mailq:elsewhere'):
        script(keys=['mailq:declared'])
    ok = redis_client.register_script(CHECKED_CALL + "return checked_call('GET', KEYS[1])")
    assert ok(keys=['mailq:declared']) is None


def test_every_script_touches_only_the_keys_in_keys(checked_rt, redis_client):
    """Drive every script through the store's own calls, each checked key by key."""
    rt, store = checked_rt, checked_rt.store
    worker = 'host:1:abc'
    # accept (queue, schedule, idempotency), fetch + claim, finish as sent / retrying / dead
    sent = send(rt, idempotency_key='k1')
    assert send(rt, idempotency_key='k1') == sent
    later = send(rt, delay=3600)
    queue, task, claim = store.take(worker, ['mailers', 'default'], 't1')
    assert finish(rt, sent, task, worker, 'sent') == 1
    retried = send(rt)
    _, task, _ = store.take(worker, ['mailers'], 't1')
    assert finish(rt, retried, task, worker, 'retrying', next_at=time.time() - 1,
                  new_task=rt.new_task(retried, 'mailers')) == 1
    assert store.move_due() == 1                                     # due.lua
    _, task, _ = store.take(worker, ['mailers'], 't1')
    assert finish(rt, retried, task, worker, 'dead') == 1
    # release and requeue of in-flight tasks, a stale task dropped by claim
    released = send(rt)
    _, task, _ = store.take(worker, ['mailers'], 't1')
    assert store.release(released, task, 'mailers', worker, 't1') == 1
    store.take(worker, ['mailers'], 't1')
    assert store.requeue_worker(worker) == 1
    cancelled = send(rt)
    assert service.cancel(rt, cancelled)['status'] == 'cancelled'   # cancel.lua
    batch = service.send_batch(rt, [{'to': 'bob@example.com', 'subject': 's', 'text': 't'},
                                    {'to': 'bob@example.com', 'subject': 's', 'text': 't',
                                     'delay': 3600}])              # accept_batch.lua
    assert [m['status'] for m in batch] == ['queued', 'scheduled']
    # the dashboard's actions and lists, and trimming
    assert admin.act(rt, 'scheduled', 'enqueue', [later])['done'] == 1
    assert admin.act(rt, 'dead', 'retry', everything=True)['done'] == 1
    assert admin.listing(rt, 'queue', query='ann', queue='mailers')['total'] >= 1
    _, task, _ = store.take(worker, ['mailers'], 't1')
    killed = task_mail_id(task)
    assert finish(rt, killed, task, worker, 'retrying', next_at=time.time() + 60,
                  new_task=rt.new_task(killed, 'mailers')) == 1
    assert admin.act(rt, 'retrying', 'kill', [killed])['done'] == 1   # admin_kill + trim
    assert admin.act(rt, 'dead', 'delete', [killed])['done'] == 1     # admin_delete
    assert admin.clear_queue(rt, 'mailers')['deleted'] >= 1           # admin_clear
    outboxed = send(rt)
    _, task, _ = store.take(worker, ['mailers'], 't1')
    assert finish(rt, outboxed, task, worker, 'sent', outbox=True) == 1
    assert store.outbox.trim(0) == 1                                  # trim.lua
    assert store.get(outboxed) is None
    # a lookup that meets a bucket entry of a record gone drops it (index_drop)
    dropped = send(rt)
    message_id = store.get(dropped).fields['message_id'].strip('<>')
    redis_client.delete(f'mailq:m:{dropped}')
    assert store.index.lookup('msgid', message_id) == ([], None)
    # cron's scripts
    cron = store.cron
    assert cron.claim('job', 100, 101, 'tok', worker, 3600) == 'ok'
    assert cron.reclaim('job', 100, cron.pending('job')[100][0], 'tok2', worker, 102)
    assert cron.finish('job', 100, 'tok2', {'outcome': 'ok'})
    assert cron.skip(cron.cursor('job', 103), 'job', '103', {'outcome': 'skipped'})
    cron.pause('job')
    cron.resume('job', 104)
    assert cron.history('job')[0]['outcome'] == 'skipped'
    assert rt.scripts_run == set(store_scripts.NAMES) - {'hook_done', 'suppress', 'limit_cut',
                                                         'limit_slots'}
    assert not list(redis_client.scan_iter('mailq:hook:*'))     # no endpoint: no event
    assert not list(redis_client.scan_iter('mailq:limit:*'))    # no limit: no limiter state
    assert not redis_client.exists('mailq:held')


@pytest.fixture
def checked_hooks_rt(tmp_ini, redis_url, smtp_server, monkeypatch):
    """checked_rt with a webhook endpoint taking every event."""
    from support.ini import smtp_section
    ini = tmp_ini(redis={'url': redis_url}, smtp=smtp_section(smtp_server),
                  **{'webhook:app': {'url': 'http://127.0.0.1:9/', 'secret': 's'}})
    return checked_runtime(ini, monkeypatch)


def test_with_webhooks_and_suppressions_every_script_touches_only_its_keys(
        checked_hooks_rt, redis_client):
    """The scripts that write events and suppressions, each checked key by key."""
    from mailq import suppression
    rt, store = checked_hooks_rt, checked_hooks_rt.store
    worker, now = 'host:1:abc', time.time()
    suppression.add(rt, 'gone@example.com')                           # suppress.lua
    partly = service.send(rt, {'to': ['gone@example.com', 'ann@example.com'], 'subject': 's',
                               'text': 't'})
    assert partly['suppressed'] == ['gone@example.com']
    assert service.send(rt, {'to': 'GONE@example.com', 'subject': 's',
                             'text': 't'})['status'] == 'suppressed'
    _, task, claim = store.take(worker, ['mailers'], 't1')
    assert claim[1] == ['ann@example.com'] and claim[4] == []
    bad = {'bad@example.com': {'address': 'bad@example.com', 'until': now + 60}}
    assert finish(rt, partly['id'], task, worker, 'sent', suppress=bad,
                  event={'recipients': [], 'code': 250, 'reply': 'ok'}) == 1
    assert store.suppressions.get('bad@example.com')['until'] == now + 60
    cancelled = send(rt)
    assert service.cancel(rt, cancelled)['status'] == 'cancelled'
    killed = send(rt)
    _, task, _ = store.take(worker, ['mailers'], 't1')
    finish(rt, killed, task, worker, 'retrying', next_at=now + 60,
           new_task=rt.new_task(killed, 'mailers'))
    assert store.kill([killed]) == [killed]
    poisoned = send(rt)
    rt.redis.hset(rt.keys.record(poisoned), 'interrupted', 9)
    store.take(worker, ['mailers'], 't1')
    assert store.requeue_worker(worker) == 0                           # the 10th: dead
    types = [f[b'type'].decode() for _, f in
             redis_client.xrange(rt.keys.hook_events('app'))]
    assert types == ['mail.suppressed', 'mail.suppressed', 'mail.partly_sent',
                     'mail.cancelled', 'mail.retrying', 'mail.dead', 'mail.dead']
    store.events.ensure_group('app')
    read = store.events.read_new('app', worker, 100, 1)
    store.events.done('app', [(read[0][0], 'ok', {}), (read[1][0], 'failed', {})], now, 10)
    assert store.events.backlog('app') == (len(types) - 1, len(types) - 1)
    assert suppression.remove(rt, 'gone@example.com')['removed']
    assert store.suppressions.expire_step(now + 61) == 1               # suppress.lua expire
    assert store.suppressions.get('bad@example.com') is None
    assert rt.scripts_run >= {'accept', 'claim', 'finish', 'cancel', 'admin_kill', 'requeue',
                              'hook_done', 'suppress'}


def _snapshot(client, channel_messages):
    """Every key of the Redis with its type, content and whether it expires (stream
    entries without their ids, which hold the time), and the events published."""
    found = {}
    for key in sorted(client.scan_iter('*')):
        kind = client.type(key).decode()
        if kind == 'string':
            value = client.get(key)
        elif kind == 'hash':
            value = sorted(client.hgetall(key).items())
        elif kind == 'list':
            value = client.lrange(key, 0, -1)
        elif kind == 'zset':
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == 'stream':
            value = [sorted(fields.items()) for _, fields in client.xrange(key)]
        else:
            value = kind
        found[key] = (kind, value, client.ttl(key) > 0)
    return found, channel_messages


def _accept_twice(rt, client, monkeypatch, items):
    """The Redis left by accept.lua a mail at a time, then by one accept_all (from an
    emptied Redis), for the same mails, tasks and clock."""
    from mailq import suppression
    from mailq.store import mails as store_mails
    monkeypatch.setattr(store_mails.time, 'time', lambda: 1_900_000_000.0)
    states = []
    for run in ('one by one', 'batch'):
        client.flushall()
        suppression.add(rt, 'gone@example.com')
        events = client.pubsub()
        events.subscribe(rt.keys.events)
        events.get_message(timeout=1)
        if run == 'one by one':
            replies = [rt.store.accept(*item) for item in items]
        else:
            replies = rt.store.accept_all(items)
        published = []
        while (message := events.get_message(timeout=0.2)) is not None:
            published.append(json.loads(message['data']))
        events.close()
        states.append((replies, _snapshot(client, published)))
    return states


@pytest.mark.parametrize('packer', ['hiredis', 'redis-py'])
def test_a_batch_call_stores_exactly_what_accept_stores_one_mail_at_a_time(
        checked_hooks_rt, redis_client, monkeypatch, packer):
    """accept_batch.lua (Store.accept_all, several mails a call, several calls in one
    MULTI/EXEC) leaves every key, record field, index entry, wake token, webhook event
    and live-page event that accept.lua leaves, mail by mail: queued and scheduled
    mails, recipients partly and wholly suppressed, an address of several mails (its
    index moves to a zset), more mails than one call takes; packed by hiredis or, as in
    dist/mailq.pyz, by redis-py."""
    from mailq.store import mails as store_mails
    monkeypatch.setattr(store_mails, 'BATCH_CALL', 7)
    if packer == 'redis-py':        # dist/mailq.pyz: no hiredis, redis-py's pipeline
        monkeypatch.setattr(store_scripts, 'pack_command', None)
    rt = checked_hooks_rt
    requests = []
    for n in range(23):
        to = ['gone@example.com'] if n % 11 == 3 else [f'r{n % 5}@example.com']
        if n % 4 == 1:
            to.append('GONE@example.com')
        requests.append({'to': to, 'subject': f's{n}', 'text': 't',
                         **({'delay': 3600} if n % 3 == 0 else {})})
    mails = [compose(r, config=rt.config, templates=rt.templates, now=1_899_999_990.0)
             for r in requests]
    items = [(m, rt.new_task(m.id, m.queue), '') for m in mails]
    (single, alone), (batched, together) = _accept_twice(rt, redis_client, monkeypatch, items)
    assert batched == single
    assert together == alone
    keys, published = alone
    assert [r.all_suppressed for r in single].count(True) == 2
    assert sum(1 for r in single if r.suppressed and not r.all_suppressed) == 6
    assert len(published) == 23
    assert keys[rt.keys.wake('mailers').encode()][1] == [b"1"] * 14
    streams = [k for k in keys if k.startswith(b'mailq:hook:')]
    assert streams and len(keys[streams[0]][1]) == 8        # one mail.suppressed each
    assert keys[rt.keys.queue('mailers').encode()][0] == 'list'
    assert any(k.startswith(b'mailq:ix:rcpt:') for k in keys)


@pytest.fixture
def checked_limits_rt(tmp_ini, redis_url, smtp_server, monkeypatch):
    """checked_rt with every limit set: the relay's and a [throttle:NAME] group's."""
    from support.ini import smtp_section
    ini = tmp_ini(redis={'url': redis_url},
                  smtp=smtp_section(smtp_server, rate='1', burst='1', max_connections='1',
                                    daily_quota='5', greeting_pause='30'),
                  **{'throttle:slow': {'domains': 'slow.example, *.slow.test', 'rate': '1',
                                       'concurrency': '1', 'daily_quota': '3'}})
    return checked_runtime(ini, monkeypatch)


def test_with_limits_every_script_touches_only_its_keys(checked_limits_rt, redis_client):
    """The limiter's paths, each checked key by key: a session slot taken at fetch and
    refused to a second thread, a token and a group slot taken at claim, a mail held for
    lack of a token (no attempt), a throttling reply held through finish, the slot left
    at finish, renewal and release of a worker's slots, and the held mail moved back."""
    rt, store = checked_limits_rt, checked_limits_rt.store
    worker, now = 'host:1:abc', time.time()
    first = send(rt, to='a@x.slow.test')
    second = send(rt, to='b@example.com')
    queue, task, claim = store.take(worker, ['mailers'], 't1', now=now)
    assert task_mail_id(task) == first and claim[3] == 1
    assert store.take(worker, ['mailers'], 't2', now=now) == 'noslot'   # one connection
    assert redis_client.zrange('mailq:limit:slow:slots', 0, -1) == [first.encode()]
    # the relay's only token is spent: the next mail is held, its attempt not counted
    assert store.take(worker, ['mailers'], 't1', now=now) is None
    record = store.get(second)
    assert record.fields['status'] == 'held' and int(record.fields.get('attempts', 0)) == 0
    assert record.fields['held_by'] == 'relay'
    assert float(record.fields['next_at']) == pytest.approx(now + 1, abs=0.01)
    # the first mail's reply says slow down: held again, its slot freed
    ready, changed = store.throttle.throttled(['a@x.slow.test'], '454 Throttling failure',
                                              now=now)
    assert [(lim.name, before, after) for lim, before, after in changed] == [('slow', 1, 0.5)]
    attempt = {'at': now, 'worker': worker, 'outcome': 'held', 'code': 454,
               'reply': '454 Throttling failure', 'duration': 0.01}
    assert store.finish(first, task, worker, 't1', 'held', attempt, next_at=ready,
                        now=now)[0] == 1
    assert redis_client.zcard('mailq:limit:slow:slots') == 0
    record = store.get(first)
    assert record.fields['status'] == 'held' and int(record.fields['attempts']) == 0
    assert store.throttle.throttled(['c@example.com'], '421 4.7.0', greeting=True, now=now)
    assert store.throttle.renew(worker, [first], now) == 1          # the thread's session
    assert store.throttle.release(worker) == 1
    assert store.move_due(now=now + 100) == 2                       # both held mails
    assert store.status(first) == 'queued' and store.status(second) == 'queued'
    view = store.throttle.view(now)
    assert [row['name'] for row in view['limiters']] == ['relay', 'slow']
    assert rt.scripts_run >= {'fetch', 'claim', 'finish', 'limit_cut', 'limit_slots', 'due'}


def test_key_names_are_those_of_the_previous_release():
    """Upgrades keep every key where the last release wrote it."""
    keys = Keys('mailq')
    assert [keys.record('a'), keys.log('a'), keys.queue('q'), keys.wake('q'),
            keys.idempotency('k'), keys.inflight('w'), keys.busy('w'), keys.worker('w'),
            keys.commands('w'), keys.stat('processed'), keys.stat('failed', '2026-12-01'),
            keys.schedule, keys.retry, keys.dead, keys.outbox, keys.workers, keys.paused,
            keys.cron_job('j'), keys.cron_fired('j'), keys.cron_pending('j'),
            keys.cron_runs('j'), keys.cron_paused, keys.suppressed, keys.suppressed_order,
            keys.hook_events('h'), keys.hook('h'), keys.hook_log('h')] == [
        'mailq:m:a', 'mailq:m:a:log', 'mailq:q:q', 'mailq:wake:q', 'mailq:idem:k',
        'mailq:inflight:w', 'mailq:busy:w', 'mailq:w:w', 'mailq:cmd:w',
        'mailq:stat:processed', 'mailq:stat:failed:2026-12-01', 'mailq:schedule',
        'mailq:retry', 'mailq:dead', 'mailq:outbox', 'mailq:workers', 'mailq:paused',
        'mailq:cron:j', 'mailq:cron:j:fired', 'mailq:cron:j:pending', 'mailq:cron:j:runs',
        'mailq:cron:paused', 'mailq:suppressed', 'mailq:suppressed:order',
        'mailq:hook:h:events', 'mailq:hook:h', 'mailq:hook:h:log']
    # added with the limiters (store/limits.py); none is written without a limit
    assert [keys.held, keys.limit('relay'), keys.limit_slots('relay'), keys.limit_sent('relay'),
            keys.limit_free('relay')] == [
        'mailq:held', 'mailq:limit:relay', 'mailq:limit:relay:slots', 'mailq:limit:relay:sent',
        'mailq:limit:relay:free']
    # added for memory: a mail's attempts as a string, its body, the index buckets
    assert [keys.attempts('a'), keys.body('a'), keys.index_bucket('rcpt', 1, 7)] == [
        'mailq:m:a:attempts', 'mailq:m:a:body', 'mailq:ixb:rcpt:1:7']


def test_every_key_name_is_used():
    """keys.py lists the keys mailq writes: a name nothing uses is a stale entry (and a
    key an upgrade test would wrongly think it must keep)."""
    keys = Keys('mailq')
    names = (set(vars(keys)) | {n for n in vars(Keys) if not n.startswith('_')}) - {'prefix'}
    sources = [p.read_text() for p in MAILQ.rglob('*.py') if p.name != 'keys.py']
    unused = {n for n in names if not any(re.search(rf'\.{n}\b', s) for s in sources)}
    assert unused == set()


def test_a_day_counter_gets_its_ttl_when_it_is_made(checked_rt, redis_client):
    """count_day in lib.lua: a per-day key expires DAY_STAT_TTL after it is made (or,
    for a hash, after its newest field was); further outcomes leave its TTL as it is:
    a few EXPIREs a day, not one a mail."""
    from mailq.store.mails import today
    rt, worker = checked_rt, 'w1'
    day_keys = [rt.keys.stat(name, today()) for name in ('processed', 'failed', 'outcomes')]

    def deliver(outcome):
        mail_id = send(rt)
        _, task, _ = rt.store.take(worker, ['mailers'], 't1')
        assert finish(rt, mail_id, task, worker, outcome) == 1

    deliver('dead')
    deliver('sent')
    ttl = store_scripts.DAY_STAT_TTL
    assert all(ttl - 5 < redis_client.ttl(key) <= ttl for key in day_keys)
    for key in day_keys:
        redis_client.expire(key, 1000)
    deliver('dead')
    deliver('sent')
    assert all(0 < redis_client.ttl(key) <= 1000 for key in day_keys)
    assert redis_client.hgetall(day_keys[2]) == {b'dead': b'2', b'sent': b'2',
                                                b'queue:mailers': b'4'}


def test_the_states_table_is_whole():
    assert set(states.STATES) == {'queued', 'scheduled', 'sending', 'sent', 'retrying',
                                  'dead', 'cancelled', 'suppressed', 'held'}
    assert set(states.FINAL_STATES) == {'sent', 'dead', 'cancelled', 'suppressed'}
    for state in states.TABLE.values():
        assert set(state.actions) <= set(states.ACTIONS)
    assert states.actions_for('sending') == ()
    assert states.actions_for('no such state') == ('delete',)
    for kind in (*states.LISTS.values(), states.QUEUE_LIST):
        assert kind.actions == states.TABLE[kind.state].actions
    assert re.fullmatch(states.route_pattern(states.ACTIONS), 'kill')


@pytest.mark.parametrize('status', states.STATES)
def test_cancel_follows_the_states_table(checked_rt, redis_client, status):
    """cancel.lua refuses exactly the states the table says cannot be cancelled, naming
    the state; any other is cancelled (its list passed in ARGV, not written in Lua)."""
    mail_id = send(checked_rt)
    redis_client.hset(f'mailq:m:{mail_id}', 'status', status)
    expected = 'ok' if states.TABLE[status].cancellable else status
    assert checked_rt.store.cancel(mail_id) == expected
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status').decode() == \
        ('cancelled' if expected == 'ok' else status)
    assert set(states.NOT_CANCELLABLE) == {'sending', 'sent', 'cancelled', 'suppressed'}


def test_the_lua_scripts_name_no_key_themselves():
    """Key names are built in keys.py only: no script spells a part of one."""
    folder = MAILQ / 'store' / 'scripts'
    for path in folder.glob('*.lua'):
        text = path.read_text()
        for part in ("'m:'", "'q:'", "'wake:'", "':log'", "'cron:'", "'inflight:'"):
            assert part not in text, f'{path.name} builds a key name with {part}'
        assert 'ARGV[1] ..' not in text and 'prefix ..' not in text, path.name


def test_the_readme_lists_every_state():
    readme = (MAILQ.parent / 'README.md').read_text()
    line = next(line for line in readme.splitlines() if '`status` is one of' in line)
    listed = set(re.findall(r'`(\w+)`', line.split('`status` is one of', 1)[1]))
    assert set(states.STATES) <= listed


def test_accept_reloads_its_script_and_replaces_a_closed_connection(mailq_ini, redis_client):
    """accept.lua runs on a pooled connection directly (DirectScript): after SCRIPT FLUSH
    (a restarted Redis) it loads the script again, and a connection the server closed
    while it sat in the pool is replaced, as for redis-py's own command path."""
    rt = Runtime(load(str(mailq_ini), environ={}))
    ids = [send(rt)]
    redis_client.script_flush()
    ids.append(send(rt))                        # NOSCRIPT: loaded again, then run
    assert redis_client.client_kill_filter(_type='normal', skipme=True) >= 1
    ids.append(send(rt))                        # its pooled connection was closed
    assert [rt.store.get(i).status for i in ids] == ['queued'] * 3
    assert isinstance(rt.store.scripts.accept, store_scripts.DirectScript)


def test_a_thread_keeps_one_connection_for_accept_and_gives_it_back(mailq_ini, redis_client):
    """accept runs on the connection its thread keeps (KeptConnections): the same one for
    every mail of the thread, back in the pool after a failed call and when the thread
    ends, so threads that come and go do not leave connections open."""
    import gc
    import threading
    rt = Runtime(load(str(mailq_ini), environ={}))
    pool, held = rt.redis.connection_pool, rt.store.scripts.accept.kept
    used = []

    def sends():
        for _ in range(3):
            send(rt)
            used.append(held.lease.conn)

    thread = threading.Thread(target=sends)
    thread.start()
    thread.join()
    gc.collect()
    assert len(used) == 3 and used[0] is used[1] is used[2]
    assert used[0] in pool._available_connections and not pool._in_use_connections
    assert send(rt) and held.lease.conn in pool._in_use_connections
    with pytest.raises(redis.ResponseError):
        rt.store.scripts.accept(keys=[], args=[])       # accept.lua fails without KEYS
    assert held.lease is None and not pool._in_use_connections
    assert rt.store.get(send(rt)).status == 'queued'


def test_a_held_mail_cancelled_or_deleted_leaves_the_held_set_at_once(checked_limits_rt,
                                                                       redis_client):
    """Not at the next tick: cancel.lua and admin_delete.lua take it off the held set
    (through KEYS, checked), and the Held list shows each held mail with its limiter."""
    rt, store = checked_limits_rt, checked_limits_rt.store
    worker, now = 'host:1:abc', time.time()
    first, cancelled, deleted = send(rt), send(rt), send(rt)
    _, task, _ = store.take(worker, ['mailers'], 't1', now=now)     # the relay's one token
    assert finish(rt, first, task, worker, 'sent') == 1
    assert store.take(worker, ['mailers'], 't1', now=now) is None   # held, and the next
    assert store.take(worker, ['mailers'], 't1', now=now) is None
    assert redis_client.zcard('mailq:held') == 2
    rows = admin.listing(rt, 'held')['rows']
    assert [(r['id'], r['status'], r['held_by']) for r in rows] == [
        (cancelled, 'held', 'relay'), (deleted, 'held', 'relay')]
    assert rows[0]['at_ts'] < rows[1]['at_ts']                       # spaced at the pace
    assert store.get(cancelled).view()['held_by'] == 'relay'
    assert service.cancel(rt, cancelled)['status'] == 'cancelled'
    assert [task_mail_id(t) for t in redis_client.zrange('mailq:held', 0, -1)] == [deleted]
    assert admin.act(rt, 'held', 'delete', [deleted])['done'] == 1
    assert redis_client.zcard('mailq:held') == 0 and store.get(deleted) is None


def test_every_change_by_hand_is_published_for_the_live_pages(checked_limits_rt):
    """Retry, kill, delete, cancel, clear, a release noted, a held mail and the tick's
    moves each send a line on the events channel, so open lists update without a
    reload (GET /api/events)."""
    rt, store = checked_limits_rt, checked_limits_rt.store
    worker, now = 'host:1:abc', time.time()
    live = store.live_events()
    try:
        a, b, c = send(rt), send(rt), send(rt, delay=3600)
        _, task, _ = store.take(worker, ['mailers'], 't1', now=now)
        assert finish(rt, a, task, worker, 'retrying', next_at=now + 60,
                      new_task=rt.new_task(a, 'mailers')) == 1
        assert store.take(worker, ['mailers'], 't1', now=now) is None    # b is held
        assert admin.act(rt, 'retrying', 'kill', [a])['done'] == 1
        assert admin.act(rt, 'dead', 'retry', [a])['done'] == 1
        assert service.cancel(rt, b)['status'] == 'cancelled'
        assert admin.act(rt, 'scheduled', 'delete', [c])['done'] == 1
        store.note_release(a, 'copy1', ['qa@example.com'], now)
        assert admin.clear_queue(rt, 'mailers')['deleted'] == 1
        heard, deadline = [], time.monotonic() + 5
        while len(heard) < 11 and time.monotonic() < deadline:
            event = live.next(timeout=0.1)
            if event:
                heard.append((event.get('id'), event['status'], event.get('held_by')))
    finally:
        live.close()
    assert heard[3:] == [(a, 'retrying', None), (b, 'held', 'relay'), (a, 'dead', None),
                         (a, 'queued', None), (b, 'cancelled', None), (c, 'deleted', None),
                         (a, 'released', None), ('', 'deleted', None)]


@pytest.fixture
def checked_group_rt(tmp_ini, redis_url, smtp_server, monkeypatch):
    """checked_rt with one [throttle:NAME] group limited by concurrency alone."""
    from support.ini import smtp_section
    ini = tmp_ini(redis={'url': redis_url}, smtp=smtp_section(smtp_server),
                  **{'throttle:one': {'domains': 'one.example', 'concurrency': '1'}})
    return checked_runtime(ini, monkeypatch)


def test_the_mail_leaving_a_group_slot_wakes_the_one_waiting_for_it(checked_group_rt,
                                                                     redis_client):
    """A mail held for a concurrency slot does not poll: its ready time is a 1 s safety
    net, and finish.lua makes it due the moment the slot's holder leaves."""
    rt, store = checked_group_rt, checked_group_rt.store
    worker, now = 'host:1:abc', time.time()
    first, second = send(rt, to='a@one.example'), send(rt, to='b@one.example')
    _, task, _ = store.take(worker, ['mailers'], 't1', now=now)
    assert task_mail_id(task) == first
    assert store.take(worker, ['mailers'], 't2', now=now) is None      # no slot: held
    [(waiting, _)] = redis_client.zrange('mailq:limit:one:waiting', 0, -1, withscores=True)
    assert task_mail_id(waiting) == second and store.get(second).fields['held_by'] == 'one'
    assert redis_client.zscore('mailq:held', waiting) == pytest.approx(now + 1, abs=0.01)
    assert store.move_due(now=now + 0.5) == 0                          # not polled
    attempt = {'at': now, 'worker': worker, 'outcome': 'sent', 'code': 250, 'reply': 'ok',
               'duration': 0.01}
    assert store.finish(first, task, worker, 't1', 'sent', attempt, now=now + 0.6)[0] == 1
    assert redis_client.zscore('mailq:held', waiting) == pytest.approx(now + 0.6)
    assert redis_client.zcard('mailq:limit:one:waiting') == 0
    assert store.move_due(now=now + 0.6) == 1
    _, task, _ = store.take(worker, ['mailers'], 't2', now=now + 0.6)
    assert task_mail_id(task) == second
    assert rt.scripts_run >= {'claim', 'finish', 'due'}


@pytest.fixture
def checked_held_hook_rt(tmp_ini, redis_url, smtp_server, monkeypatch):
    """checked_group_rt with an endpoint that names mail.held, and one on `*`."""
    from support.ini import smtp_section
    ini = tmp_ini(redis={'url': redis_url}, smtp=smtp_section(smtp_server),
                  **{'throttle:one': {'domains': 'one.example', 'concurrency': '1'},
                     'webhook:app': {'url': 'http://127.0.0.1:9/', 'secret': 's',
                                     'events': 'mail.held, mail.sent'},
                     'webhook:all': {'url': 'http://127.0.0.1:9/', 'secret': 's'}})
    return checked_runtime(ini, monkeypatch)


def test_a_mail_held_the_first_time_is_a_mail_held_event_for_who_names_it(
        checked_held_hook_rt, redis_client):
    from mailq.webhooks import event_body
    rt, store = checked_held_hook_rt, checked_held_hook_rt.store
    worker, now = 'host:1:abc', time.time()
    send(rt, to='a@one.example')
    second = send(rt, to='b@one.example')
    store.take(worker, ['mailers'], 't1', now=now)
    assert store.take(worker, ['mailers'], 't2', now=now) is None       # held
    assert store.move_due(now=now + 2) == 1
    assert store.take(worker, ['mailers'], 't2', now=now + 2) is None   # held again
    entries = redis_client.xrange(rt.keys.hook_events('app'))
    assert [f[b'type'] for _, f in entries] == [b'mail.held']          # the first hold only
    assert not redis_client.exists(rt.keys.hook_events('all'))          # `*` leaves it out
    entry_id, fields = entries[0]
    _, body = event_body(entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
    mail = json.loads(body)['mail']
    assert (mail['id'], mail['status'], mail['held_by']) == (second, 'held', 'one')
    assert mail['ready_at'].endswith('Z')
