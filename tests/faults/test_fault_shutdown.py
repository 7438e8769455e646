"""Fault 5: SIGTERM under load. In-flight mails finish, or go back to their queue
when `[worker] shutdown_timeout` runs out; nothing is left in `sending`."""
import signal
import time

from rig import record, wait_until


def sigterm_while_busy(rig, min_busy):
    worker = rig.worker('-w', '25')
    wid = rig.worker_id(worker)
    wait_until(lambda: rig.busy(wid) >= min_busy, 30, f'{min_busy} deliveries in flight')
    busy = rig.busy(wid)
    worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    worker.wait(30)
    return worker, busy, time.monotonic() - signalled


def assert_clean_stop(rig, worker, ids):
    assert worker.returncode == 0, rig.log(worker)[-2000:]
    statuses = rig.statuses(ids)
    assert 'sending' not in statuses, statuses
    assert rig.leftover_keys() == []
    assert 'Traceback' not in rig.log(worker)


def test_sigterm_lets_in_flight_mails_finish(make_rig, smtp):
    rig = make_rig(worker={'shutdown_timeout': '10'})
    smtp.delay_data(0.3)
    ids = rig.enqueue(300)
    worker, busy, took = sigterm_while_busy(rig, 20)
    assert_clean_stop(rig, worker, ids)
    received_at_stop = len(smtp.messages)
    assert received_at_stop >= busy        # the ones in flight were finished, not dropped
    rig.worker('-w', '25')
    message_ids = rig.message_ids(ids)
    wait_until(lambda: rig.all_delivered(message_ids.values()), 60, 'the rest delivered')
    figures = rig.tally(ids, message_ids)
    assert figures['lost'] == 0 and figures['duplicates'] == 0
    record('SIGTERM under load (in-flight finish)', in_flight=busy, stop_s=round(took, 2),
           recover_s=None, **figures)


def test_sigterm_returns_mails_still_in_flight_after_the_timeout(make_rig, smtp):
    rig = make_rig(worker={'shutdown_timeout': '1'}, smtp={'timeout': '30'})
    smtp.delay_data(6)                     # longer than shutdown_timeout
    ids = rig.enqueue(60)
    worker, busy, took = sigterm_while_busy(rig, 25)
    assert_clean_stop(rig, worker, ids)
    assert 'returned' in rig.log(worker)   # "returned N unfinished mail(s) to their queues"
    assert rig.statuses(ids)['queued'] == len(ids)
    smtp.delay_data(0)
    rig.worker('-w', '25')
    message_ids = rig.message_ids(ids)
    wait_until(lambda: rig.all_delivered(message_ids.values()), 60, 'all delivered')
    wait_until(lambda: rig.statuses(ids) == {'sent': len(ids)}, 30, 'records to say sent')
    figures = rig.tally(ids, message_ids)
    # The slow server still takes the copies whose client went away: at most those.
    assert figures['lost'] == 0 and figures['duplicates'] <= busy
    record('SIGTERM, in-flight longer than shutdown_timeout (returned)', in_flight=busy,
           stop_s=round(took, 2), recover_s=None, **figures)
