"""`mailq send` takes the API's cc, bcc, delay and idempotency_key (issue 11 item 20)."""
import json
import time

from support.mailq_app import run_cli


def mail(redis_client, mail_id):
    return {k.decode(): v.decode() for k, v in redis_client.hgetall(f'mailq:m:{mail_id}').items()}


def send(ini, *args):
    result = run_cli(ini, 'send', '--subject', 's', '--text', 't', *args)
    assert result.returncode == 0, result.stderr
    return result


def test_cc_and_bcc_reach_the_envelope_and_only_cc_the_headers(mailq_ini, smtp_server,
                                                               worker):
    send(mailq_ini, '--to', 'ann@example.com', '--cc', 'cat@example.com', '--cc',
         'cid@example.com', '--bcc', 'bob@example.com')
    [got] = smtp_server.wait_for(1)
    assert sorted(got.rcpt_tos) == ['ann@example.com', 'bob@example.com', 'cat@example.com',
                                    'cid@example.com']
    headers = got.data.split(b'\r\n\r\n', 1)[0]
    assert b'Cc: cat@example.com, cid@example.com' in headers
    assert b'bob@example.com' not in headers


def test_delay_schedules_the_mail(mailq_ini, redis_client):
    before = time.time()
    mail_id = send(mailq_ini, '--to', 'ann@example.com', '--delay', '3600').stdout.strip()
    stats = json.loads(run_cli(mailq_ini, 'stats').stdout)
    assert stats['scheduled'] == 1 and stats['enqueued'] == 0
    record = mail(redis_client, mail_id)
    assert record['status'] == 'scheduled'
    assert before + 3590 < float(record['send_at']) < time.time() + 3610


def test_delay_and_at_together_or_a_bad_delay_are_refused(mailq_ini):
    result = run_cli(mailq_ini, 'send', '--to', 'a@example.com', '--subject', 's', '--text',
                     't', '--delay', '5', '--at', '2099-01-01T00:00:00+00:00')
    assert result.returncode == 1 and 'give send_at or delay, not both' in result.stderr
    result = run_cli(mailq_ini, 'send', '--to', 'a@example.com', '--delay', 'soon')
    assert result.returncode == 2 and "'soon' is not a number of seconds" in result.stderr
    result = run_cli(mailq_ini, 'send', '--to', 'a@example.com', '--subject', 's', '--text',
                     't', '--delay', '-1')
    assert result.returncode == 1 and 'delay: must be a number of seconds >= 0' in result.stderr


def test_the_same_idempotency_key_gives_the_same_id_and_one_mail(mailq_ini, redis_client):
    first = send(mailq_ini, '--to', 'ann@example.com', '--idempotency-key', 'order-42')
    again = send(mailq_ini, '--to', 'ann@example.com', '--idempotency-key', 'order-42')
    assert first.stdout.strip() == again.stdout.strip()
    assert 'seen before' in again.stderr and 'seen before' not in first.stderr
    assert json.loads(run_cli(mailq_ini, 'stats').stdout)['enqueued'] == 1
    other = send(mailq_ini, '--to', 'ann@example.com', '--idempotency-key', 'order-43')
    assert other.stdout.strip() != first.stdout.strip()
