"""The one results table: each figure, its baseline from the same run, and the target."""


def table(r):
    base = r['deliver_baseline']['rate']
    huey_calls = r['enqueue_huey']['rate']
    rows = [('Delivery, plain Huey baseline (-w 25 threads)', f'{base:,.0f} mails/s', '-', '-')]
    for key, label in (('deliver_thread', 'Delivery, mailq -w 25 threads'),
                       ('deliver_process', 'Delivery, mailq -w 25 -k process'),
                       ('deliver_two', 'Delivery, 2 mailq processes x 25 threads')):
        rate = r[key]['rate']
        rows.append((label, f'{rate:,.0f} mails/s ({rate / base:.2f}x)', f'{base:,.0f}',
                     _ok(rate >= 3 * base, '>= 3x baseline')))
    if 'deliver_rate' in r:
        rate, plain = r['deliver_rate']['rate'], r['deliver_thread']['rate']
        rows.append(('Delivery, -w 25 threads, [smtp] rate not binding',
                     f'{rate:,.0f} mails/s ({rate / plain:.2f}x unthrottled)', f'{plain:,.0f}',
                     _ok(rate >= 0.95 * plain, 'within 5% of unthrottled')))
    if 'deliver_webhooks' in r:
        hooks = r['deliver_webhooks']
        rows.append(('Delivery, -w 25 threads, one webhook endpoint (every event)',
                     f'{hooks["with"]:,.0f} mails/s ({hooks["ratio"]:.2f}x without), '
                     f'{hooks["events_per_s"]:,.0f} events/s', f'{hooks["without"]:,.0f}',
                     _ok(hooks['ratio'] >= 0.9, '>= 90% of without webhooks')))
    for key, label, target in (('enqueue_send', 'Enqueue, mailq.send()', 5000),
                               ('enqueue_http', 'Enqueue, POST /api/mails (8 clients)', 1500),
                               ('enqueue_http2', 'Enqueue, POST /api/mails, 2 web processes',
                                1500),
                               ('enqueue_batch', 'Enqueue, POST /api/mails/batch x1000', 20000)):
        rate = r[key]['rate']
        cpu = r[key].get('cpu_us_per_request')
        cpu = ', CPU/req ' + ' '.join(f'{k} {v} us' for k, v in cpu.items()) if cpu else ''
        rows.append((label, f'{rate:,.0f} /s{cpu}', f'{huey_calls:,.0f} (Huey task())',
                     _ok(rate >= target, f'>= {target:,}')))
    smtp, http = r['enqueue_smtp']['rate'], r['enqueue_http']['rate']
    rows.append(('Enqueue, SMTP submission (smtp-source, 8 sessions)',
                 f'{smtp:,.0f} /s, CPU/msg listener {r["enqueue_smtp"]["cpu_us_per_message"]} us',
                 f'{http:,.0f} (POST /api/mails)',
                 _ok(smtp >= 1500 and smtp >= http, '>= 1,500 and >= HTTP')))
    for key, label, target in (('latency', 'Latency at 100 mails/s', 50),
                               ('punctuality', 'Punctuality (late after send_at)', 1000)):
        v = r[key]
        rows.append((label, f'p50 {v["p50_ms"]:.1f} / p99 {v["p99_ms"]:.1f} / '
                            f'max {v["max_ms"]:.1f} ms', '-', _ok(v['p99_ms'] <= target,
                                                                  f'p99 <= {target} ms')))
    for path, v in r['reads'].items():
        target = 20 if path == '/api/stats' else 200
        rows.append((f'Read {path}', f'{v["median_ms"]:.1f} ms (max {v["max_ms"]:.1f})', '-',
                     _ok(v['median_ms'] <= target, f'<= {target} ms')))
    if r['reads_missing']:
        rows.append(('Pages missing', ', '.join(f'{p} ({s})' for p, s in
                                                r['reads_missing'].items()), '-', '-'))
    stored = r['sizes'].get('search', 0)
    for label, v in r.get('search', {}).items():
        rows.append((f'Search {label}, {stored:,} mails', f'{v["median_ms"]:.1f} ms '
                     f'(max {v["max_ms"]:.1f}, {v["found"]} found)', '-',
                     _ok(v['median_ms'] <= 20 and v['found'] > 0, '<= 20 ms')))
    mem = r['memory']
    rows.append(('Redis overhead per queued mail', f'{mem["overhead_bytes"]:,} B '
                 f'(+{mem["message_bytes"]:,} B message)',
                 f'{r["enqueue_huey"].get("overhead_bytes", 0):,} B (Huey pickle)',
                 _ok(mem['overhead_bytes'] <= 1024, '<= 1,024 B')))
    for key, label in (('deliver_thread', 'threads'), ('deliver_process', '-k process'),
                       ('deliver_two', '2 processes')):
        rows.append((f'Worker RSS after run, {label}', _mb(r[key]['worker_rss']),
                     _mb(r['deliver_baseline']['worker_rss']), '-'))
    return _format(('Figure', 'mailq', 'Baseline', 'Target'), rows)


def _ok(met, text):
    return f'{text} {"OK" if met else "MISSED"}'


def _mb(n):
    return f'{n / 2 ** 20:,.0f} MiB'


def _format(header, rows):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda row: ' | '.join(str(c).ljust(w) for c, w in zip(row, widths))   # noqa: E731
    return '\n'.join([line(header), '-+-'.join('-' * w for w in widths)] + [line(r) for r in rows])
