"""The benchmark's mail (about 2 KB on the wire) and fast ways to fill Redis with it.

Queued and scheduled mails go through mailq's own compose() and accept script,
pipelined. Retrying and dead records (which only a worker writes) are written
with the fields the finish script sets, on top of Mail.record_fields().
"""
import base64
import dataclasses
import email.utils
import json
import random
import time

from mailq.compose import compose, new_mail_id
from mailq.store import body

WORDS = ('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor '
         'incididunt ut labore et dolore magna aliqua ').split()


def body_text(size):
    words, length = [], 0
    while length < size:
        word = WORDS[len(words) % len(WORDS)]
        words.append(word)
        length += len(word) + 1
    lines = [' '.join(words[i:i + 10]) for i in range(0, len(words), 10)]
    return '\n'.join(lines) + '\n'


def request(n=0, **extra):
    """The API/send() fields of benchmark mail number n; the body makes it about 2 KB."""
    return {'to': f'user{n}@example.com', 'from': 'Bench <bench@example.com>',
            'subject': f'Your receipt {n}', 'text': TEXT, **extra}


TEXT = body_text(1750)


def sample_mail(rt, n=0):
    return compose(request(n), config=rt.config, templates=rt.templates)


HOT = 'ops@example.com'
SPREAD = 50000        # addresses sharing the other nine tenths


def address(n):
    """The recipient of mail number n: one address gets a tenth of all mail (the
    monitoring inbox that makes a deep index), the others a few each."""
    return HOT if n % 10 == 0 else f'user{n % SPREAD}@example.com'


def numbered(template, n):
    """Mail number n of a fill: an id, recipient, Message-ID and every other one an
    idempotency key of its own (the body stays the template's)."""
    to = address(n)
    return dataclasses.replace(template, id=new_mail_id(), recipients=[to], to=[to],
                               message_id=f'<{n}.bench@example.com>',
                               idempotency_key=f'order-{n}' if n % 2 == 0 else None)


def receipt(template, n):
    """Receipt number n: a Message-ID as compose makes them and a recipient of its own,
    no idempotency key (the memory rows: each mail's index entries are its own)."""
    to = f'user{n}@example.com'
    return dataclasses.replace(template, recipients=[to], to=[to],
                               message_id=email.utils.make_msgid(domain='example.com'))


def fill_queued(rt, count, queues=None, chunk=2000, send_at=None, template=None, first=None,
                distinct=False):
    """`count` mails (copies of `template`, by default the 2 KB one) through the real
    accept script, pipelined. Returns their ids. With `first`, they are mails number
    first on of `numbered`: each with index entries of its own, as real mail has;
    `distinct`, `receipt`s."""
    queues = queues or rt.config.worker.queue_names[:1]
    template = template or sample_mail(rt)
    ids = []
    for start in range(0, count, chunk):
        pipe = rt.redis.pipeline(transaction=False)
        for n in range(start, min(start + chunk, count)):
            mail = template if first is None else numbered(template, first + n)
            mail = receipt(mail, n) if distinct else mail
            mail = dataclasses.replace(mail, id=new_mail_id(), queue=queues[n % len(queues)],
                                       send_at=send_at)
            rt.store.accept(mail, rt.new_task(mail.id, mail.queue), pipe=pipe)
            ids.append(mail.id)
        pipe.execute()
    return ids


def fill_finished(rt, count, status, chunk=2000, now=None):
    """`count` mails as the finish script leaves them after one failed attempt:
    'retrying' (task in the retry set) or 'dead' (id in the dead set)."""
    keys, template = rt.keys, sample_mail(rt)
    now = now or time.time()
    for start in range(0, count, chunk):
        pipe = rt.redis.pipeline(transaction=False)
        for n in range(start, min(start + chunk, count)):
            mail = dataclasses.replace(template, id=new_mail_id(), queue=template.queue)
            task = rt.new_task(mail.id, mail.queue)
            fields = mail.record_fields(status=status, task=task)
            error = ('451 4.3.0 try again later' if status == 'retrying'
                     else '550 5.1.1 no such user')
            fields.update(attempts=1, last_error=error, finished_at=now - n)
            attempt = {'at': now - n, 'worker': 'bench:1:aaaaaa', 'outcome': status,
                       'code': int(error[:3]), 'reply': error[4:], 'duration': 0.002}
            if status == 'retrying':
                fields['next_at'] = now + 3600 + n
                pipe.zadd(keys.retry, {task: fields['next_at']})
            else:
                pipe.zadd(keys.dead, {mail.id: now - n})
            pipe.hset(keys.record(mail.id), mapping=fields)
            pipe.set(keys.body(mail.id), body.pack(mail.raw))
            pipe.set(keys.attempts(mail.id), json.dumps(attempt) + '\n')
        pipe.execute()


# -- a realistic transactional HTML mail (about 20 KB), with its text part ---------

PRODUCTS = ('Merino wool socks', 'Canvas tote bag', 'Ceramic pour-over set', 'Linen napkins',
            'Walnut cutting board', 'Espresso beans, 1 kg', 'Cast iron skillet',
            'Beeswax candles', 'Stoneware mug', 'Cotton apron', 'Olive oil, 500 ml',
            'Bamboo utensils')
CELL = 'padding:8px 12px;border-bottom:1px solid #e5e7eb;font-family:Helvetica,Arial,sans-serif'


def receipt_html(n=0, lines=28):
    """An order receipt as shops send it: inline styles, a table of items, a footer."""
    rows = []
    for i in range(lines):
        name = PRODUCTS[(n + i) % len(PRODUCTS)]
        qty, price = 1 + (n * 7 + i * 3) % 4, 3.5 + ((n * 13 + i * 29) % 9000) / 100
        rows.append(
            f'<tr><td style="{CELL};font-size:14px;color:#111827">{name}<br>'
            f'<span style="font-size:12px;color:#6b7280">SKU {10000 + (n * 31 + i * 97) % 89999}'
            f' &middot; ships in {1 + i % 5} days</span></td>'
            f'<td style="{CELL};font-size:14px;color:#111827;text-align:center">{qty}</td>'
            f'<td style="{CELL};font-size:14px;color:#111827;text-align:right">'
            f'&euro;{qty * price:,.2f}</td></tr>')
    style = 'font-family:Helvetica,Arial,sans-serif;font-size:14px;line-height:20px;color:#374151'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>Your order {100000 + n}</title></head>'
        '<body style="margin:0;padding:0;background:#f3f4f6">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="background:#f3f4f6"><tr><td align="center" style="padding:24px">'
        '<table role="presentation" width="600" cellpadding="0" cellspacing="0" '
        'style="background:#ffffff;border-radius:8px">'
        f'<tr><td style="padding:24px;{style}"><h1 style="margin:0 0 12px;font-size:22px;'
        f'color:#111827">Thank you for your order, customer {n}!</h1>'
        f'<p style="margin:0 0 16px;{style}">We have received order <b>#{100000 + n}</b> '
        'placed on 2 December 2026 and will let you know as soon as it ships. You can '
        f'follow it at any time from <a href="https://shop.example.com/orders/{100000 + n}'
        f'?utm_source=mail&amp;utm_medium=receipt" style="color:#2563eb">your account</a>.</p>'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0">'
        + ''.join(rows) +
        f'</table><p style="margin:16px 0 0;{style}">Questions? Reply to this mail or write '
        'to <a href="mailto:help@shop.example.com" style="color:#2563eb">'
        'help@shop.example.com</a>.</p></td></tr>'
        f'<tr><td style="padding:16px 24px;{style};font-size:12px;color:#9ca3af">'
        'Example Shop GmbH &middot; Hauptstrasse 1 &middot; 10115 Berlin &middot; '
        '<a href="https://shop.example.com/unsubscribe" style="color:#9ca3af">Preferences</a>'
        '</td></tr></table></td></tr></table></body></html>')


def receipt_text(n=0, lines=28):
    items = '\n'.join(f'  {PRODUCTS[(n + i) % len(PRODUCTS)]:<28} x{1 + (n * 7 + i * 3) % 4}'
                      for i in range(lines))
    return (f'Thank you for your order, customer {n}!\n\nOrder #{100000 + n}:\n{items}\n\n'
            f'Follow it at https://shop.example.com/orders/{100000 + n}\n\n'
            'Example Shop GmbH, Hauptstrasse 1, 10115 Berlin\n')


def html_request(n=0, lines=28, **extra):
    """The API/send() fields of the realistic HTML mail number n (about 20 KB raw; with
    `lines` 300, a long order of about 200 KB)."""
    return {'to': f'user{n}@example.com', 'from': 'Example Shop <shop@example.com>',
            'subject': f'Your order {100000 + n}', 'text': receipt_text(n, lines),
            'html': receipt_html(n, lines), **extra}


def html_mail(rt, n=0, lines=28):
    return compose(html_request(n, lines), config=rt.config, templates=rt.templates)


def attachment_mail(rt, size=2 * 2 ** 20):
    """The 2 KB mail with a PDF of `size` bytes that does not compress (as a real one)."""
    content = base64.b64encode(random.Random(size).randbytes(size)).decode()
    pdf = {'filename': 'invoice.pdf', 'content_type': 'application/pdf', 'content': content}
    return compose(request(0, attachments=[pdf]), config=rt.config, templates=rt.templates)
