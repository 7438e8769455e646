"""The baseline: a plain Huey task (stock RedisStorage, pickle) that sends one mail
with smtplib over a new connection, run by `huey_consumer bench.plain_huey.huey`."""
import os
import smtplib

from huey import RedisHuey

huey = RedisHuey('bench', url=os.environ['BENCH_REDIS_URL'])


@huey.task()
def send_mail(sender, recipients, raw):
    with smtplib.SMTP('127.0.0.1', int(os.environ['BENCH_SINK_PORT']), timeout=30) as smtp:
        smtp.sendmail(sender, recipients, raw)
