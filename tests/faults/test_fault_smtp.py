"""Fault 4: a misbehaving SMTP relay. Each outcome follows RFC 5321 4.2.1 as the
core decides it: 2xx sent; 4xx, connection errors and timeouts retried with
backoff; 5xx dead at once with the reply kept; retries that run out dead. A fault
for one mail never holds up the others."""
import time

import pytest

from rig import Rig, record, wait_until
from support.procs import free_port
from support.smtp_server import SMTPServer

VICTIM = 'victim@example.com'
HEALTHY = 20


@pytest.fixture
def rig_for(tmp_path, aof_redis):
    """rig_for(server, **ini sections) -> a Rig with one running 4-thread worker."""
    rigs = []

    def make(server, **sections):
        rig = Rig(tmp_path, aof_redis, server, **sections)
        rigs.append(rig)
        rig.worker_proc = rig.worker('-w', '4')
        return rig

    yield make
    for rig in rigs:
        rig.stop_all()


def victim_and_others(rig):
    """Enqueue the mail the fault is aimed at first, then healthy mails behind it."""
    [victim] = rig.enqueue(1, to=VICTIM)
    others = rig.enqueue(HEALTHY)
    return victim, others


def outcomes(rig, mail_id):
    return [(a['outcome'], a['code']) for a in rig.history(mail_id)]


# -- faults aimed at one mail: the healthy ones must not wait for it

RETRIED = [
    ('drop mid-DATA', dict(drop=True, times=2), None),
    ('421 at DATA', dict(reply='421 4.3.2 Shutting down', times=2), 421),
    ('451 at DATA', dict(reply='451 4.3.0 Local error', times=2), 451),
    ('452 at DATA', dict(reply='452 4.3.1 Insufficient storage', times=2), 452),
]


@pytest.mark.parametrize('name, fault, code', RETRIED, ids=[r[0] for r in RETRIED])
def test_transient_fault_is_retried_then_sent(rig_for, smtp, name, fault, code):
    smtp.fault_for(VICTIM, **fault)
    rig = rig_for(smtp)
    started = time.monotonic()
    victim, others = victim_and_others(rig)
    ids = [victim] + others
    message_ids = rig.message_ids(ids)
    wait_until(lambda: rig.all_sent(message_ids), 30, 'all delivered and recorded',
               detail=lambda: rig.stuck(ids))
    recover = time.monotonic() - started
    history = outcomes(rig, victim)
    assert history[:2] == [('retrying', code or 0)] * 2 and history[2:] == [('sent', 250)]
    if fault.get('drop'):
        assert 'Disconnected' in rig.history(victim)[0]['reply']
    assert rig.statuses(ids) == {'sent': len(ids)}
    figures = rig.tally(ids, message_ids)
    assert figures['duplicates'] == 0
    record(f'SMTP {name} (twice)', recover_s=round(recover, 2), **figures)


@pytest.mark.parametrize('code', [550, 554])
def test_permanent_reply_is_dead_at_once_with_the_reply_kept(rig_for, smtp, code):
    smtp.fault_for(VICTIM, reply=f'{code} 5.7.1 Message rejected as spam', times=99)
    rig = rig_for(smtp)
    victim, others = victim_and_others(rig)
    wait_until(lambda: rig.field(victim, 'status') == 'dead', 15, 'the victim dead')
    message_ids = rig.message_ids(others)
    wait_until(lambda: rig.all_delivered(message_ids.values()), 30, 'the others delivered')
    assert outcomes(rig, victim) == [('dead', code)]
    assert rig.field(victim, 'last_error') == f'{code} 5.7.1 Message rejected as spam'
    assert rig.client.zscore('mailq:dead', victim) is not None
    figures = rig.tally(others, message_ids)
    record(f'SMTP {code} at DATA', mails_in=len(others) + 1, delivered=figures['delivered'],
           dead_as_expected=1, duplicates=figures['duplicates'], lost=figures['lost'],
           recover_s=0)


def test_permanent_reply_then_hang_up_is_still_dead(rig_for, smtp):
    """Some MTAs close the connection after a 5xx; the RSET that follows fails, and
    that must not turn the permanent reply into a retry."""
    smtp.fault_for(VICTIM, reply='554 5.7.1 Rejected, bye', times=99, hang_up=True)
    rig = rig_for(smtp)
    victim, others = victim_and_others(rig)
    wait_until(lambda: rig.field(victim, 'status') in ('dead', 'retrying'), 15, 'an outcome')
    assert outcomes(rig, victim) == [('dead', 554)]
    message_ids = rig.message_ids(others)
    wait_until(lambda: rig.all_sent(message_ids), 30, 'the others delivered')


def test_slow_server_beyond_timeout_is_retried_without_blocking_others(rig_for, smtp):
    smtp.fault_for(VICTIM, delay=3, times=1)
    rig = rig_for(smtp, smtp={'timeout': '1'})
    victim, others = victim_and_others(rig)
    message_ids = rig.message_ids(others)
    # The victim's thread waits out its timeout; the other three deliver meanwhile.
    wait_until(lambda: rig.all_delivered(message_ids.values()), 30, 'the others delivered')
    wait_until(lambda: rig.field(victim, 'status') == 'sent', 30, 'the victim sent')
    first = rig.history(victim)[0]
    assert first['outcome'] == 'retrying' and 'timed out' in first['reply']
    all_ids = [victim] + others
    figures = rig.tally(all_ids)
    # The slow server may still accept the first copy after the client gave up
    # (RFC 5321 4.5.3.2): the one case where a resend can duplicate.
    assert figures['lost'] == 0 and figures['duplicates'] <= 1
    record('SMTP slow beyond timeout', **figures, recover_s=None)


def test_retries_that_run_out_end_dead(rig_for, smtp):
    smtp.fault_for(VICTIM, reply='451 4.3.0 Try later', times=99)
    rig = rig_for(smtp, worker={'max_retries': '2'})
    victim, others = victim_and_others(rig)
    wait_until(lambda: rig.field(victim, 'status') == 'dead', 20, 'the victim dead')
    assert outcomes(rig, victim) == [('retrying', 451), ('retrying', 451), ('dead', 451)]
    delays = [b['at'] - a['at'] for a, b in zip(rig.history(victim), rig.history(victim)[1:])]
    assert all(d >= 0.2 for d in delays), delays     # retry_base: backoff, not a hot loop
    message_ids = rig.message_ids(others)
    wait_until(lambda: rig.all_delivered(message_ids.values()), 30, 'the others delivered')


# -- faults of the whole connection: every mail retried, none lost, no plaintext

def test_server_down_then_up(tmp_path, rig_for):
    port = free_port()
    placeholder = type('Down', (), {'port': port, 'messages': [], '_lock': None})
    rig = rig_for(placeholder)
    ids = rig.enqueue(10)
    wait_until(lambda: all(rig.history(i) for i in ids), 20, 'a first attempt of every mail')
    assert {rig.history(i)[0]['outcome'] for i in ids} == {'retrying'}
    assert 'connect failed' in rig.history(ids[0])[0]['reply']
    with SMTPServer(port=port) as server:
        rig.smtp = server
        up = time.monotonic()
        message_ids = rig.message_ids(ids)
        wait_until(lambda: rig.all_sent(message_ids), 30, 'delivery once up')
        recover = time.monotonic() - up
        assert rig.statuses(ids) == {'sent': len(ids)}
        record('SMTP server down, then up', recover_s=round(recover, 2),
               **rig.tally(ids, message_ids))
        rig.stop_all()


def test_421_at_greeting(rig_for, smtp):
    smtp.fail_greeting(421, '4.7.0 Too many connections', times=3)
    rig = rig_for(smtp)
    ids = rig.enqueue(10)
    message_ids = rig.message_ids(ids)
    wait_until(lambda: rig.all_sent(message_ids), 30, 'delivery')
    refused = [a for i in ids for a in rig.history(i) if a['outcome'] == 'retrying']
    assert refused and {a['code'] for a in refused} == {421}
    record('SMTP 421 at greeting (3 connections)', recover_s=None, **rig.tally(ids, message_ids))


def test_tls_handshake_failure_never_falls_back_to_plaintext(rig_for, smtp_factory):
    server = smtp_factory(security='tls')      # its CA is not trusted by mailq
    rig = rig_for(server, smtp={'security': 'tls'})
    ids = rig.enqueue(5)
    wait_until(lambda: all(len(rig.history(i)) >= 2 for i in ids), 20, 'two attempts each')
    for mail_id in ids:
        first = rig.history(mail_id)[0]
        assert first['outcome'] == 'retrying' and 'SSL' in first['reply'], first
    assert server.messages == [] and server.transactions == 0
    record('SMTP TLS handshake failure', mails_in=5, delivered=0, duplicates=0, lost=0,
           retrying_as_expected=5, recover_s=None)


@pytest.mark.parametrize('setting, outcome', [('permanent', 'dead'), ('transient', 'retrying')])
def test_bad_auth(rig_for, smtp_factory, setting, outcome):
    server = smtp_factory(security='tls', auth=('user', 'right-password'))
    rig = rig_for(server, smtp={'security': 'tls', 'ca_file': server.ca_file,
                                'username': 'user', 'password': 'wrong-password',
                                'auth_failure': setting})
    [mail_id] = rig.enqueue(1)
    wait_until(lambda: rig.history(mail_id), 20, 'an attempt')
    first = rig.history(mail_id)[0]
    assert (first['outcome'], first['code']) == (outcome, 535)
    assert 'wrong-password' not in rig.log(rig.worker_proc)
    assert server.messages == []
