"""Fault 1: a worker is killed with SIGKILL mid-delivery; no mail may be lost."""
import random
import time

from mailq.store.containers import task_mail_id
from rig import FULL, PREFIX, record, wait_until

MAILS, KILLS = (2000, 12) if FULL else (400, 4)


def test_kill9_worker_repeatedly_loses_nothing(make_rig, smtp):
    rig = make_rig()
    smtp.delay_data(0.1)    # keeps ~25 SMTP transactions open at any moment
    ids = rig.enqueue(MAILS)
    message_ids = rig.message_ids(ids)
    rng = random.Random(5)
    in_flight_at_kills, recoveries = [], []
    worker = rig.worker('-w', '25')
    while len(in_flight_at_kills) < KILLS:
        wid = rig.worker_id(worker)
        wait_until(lambda: rig.busy(wid) > 0, 30, 'the worker to start delivering')
        time.sleep(rng.uniform(0.05, 0.4))
        rig.kill9(worker)
        killed_at, received = time.monotonic(), len(smtp.messages)
        # The busy hash outlives SIGKILL: it lists every claimed, unfinished delivery.
        in_flight_at_kills.append(rig.busy(wid))
        worker = rig.worker('-w', '25')
        wait_until(lambda: len(smtp.messages) > received, 60, 'deliveries to resume')
        recoveries.append(time.monotonic() - killed_at)
        assert not rig.all_delivered(message_ids.values()), 'load too small for the kills'

    wait_until(lambda: rig.all_delivered(message_ids.values()), 120, 'every mail delivered')
    wait_until(lambda: rig.statuses(ids) == {'sent': len(ids)}, 30,
               'every record to say sent')
    figures = rig.tally(ids, message_ids)
    assert figures['lost'] == 0
    assert figures['duplicates'] <= sum(in_flight_at_kills)
    assert sum(in_flight_at_kills) > 0, 'no kill hit a delivery in flight'
    rig.stop_all()
    assert rig.leftover_keys() == []
    record('worker kill -9', kills=KILLS, in_flight_at_kills=sum(in_flight_at_kills),
           recover_s=round(max(recoveries), 2), **figures)


def test_in_flight_mails_of_a_dead_worker_move_to_the_live_one(make_rig, smtp):
    rig = make_rig()
    smtp.delay_data(0.3)
    ids = rig.enqueue(150)
    message_ids = rig.message_ids(ids)
    doomed, survivor = rig.worker('-w', '10'), rig.worker('-w', '10')
    doomed_id, survivor_id = rig.worker_id(doomed), rig.worker_id(survivor)
    wait_until(lambda: rig.busy(doomed_id) >= 5, 30, 'the doomed worker to be busy')
    rig.kill9(doomed)
    killed_at = time.monotonic()
    stranded = [task_mail_id(t)
                for t in rig.client.lrange(PREFIX + 'inflight:' + doomed_id, 0, -1)]
    assert stranded

    wait_until(lambda: rig.all_sent(message_ids), 60, 'every mail delivered and recorded')
    recover = time.monotonic() - killed_at
    for mail_id in stranded:
        last = rig.history(mail_id)[-1]
        assert last['outcome'] == 'sent' and last['worker'] == survivor_id
    assert rig.client.zscore(PREFIX + 'workers', doomed_id) is None
    assert not rig.client.exists(PREFIX + 'inflight:' + doomed_id)
    figures = rig.tally(ids, message_ids)
    assert figures['lost'] == 0 and figures['duplicates'] <= len(stranded)
    assert rig.statuses(ids) == {'sent': len(ids)}
    record('worker kill -9, second worker takes over', stranded=len(stranded),
           recover_s=round(recover, 2), **figures)
