"""Redis memory per queued mail, beyond the message bytes themselves."""
from . import mails


def queued_overhead(env, rt, count):
    env.flush()
    client = env.client()
    before = client.info('memory')['used_memory']
    mails.fill_queued(rt, count)
    after = client.info('memory')['used_memory']
    raw = len(mails.sample_mail(rt).raw)
    per_mail = (after - before) / count
    return {'mails': count, 'bytes_per_mail': round(per_mail), 'message_bytes': raw,
            'overhead_bytes': round(per_mail - raw)}
