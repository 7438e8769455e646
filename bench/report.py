"""The one results table: each figure, its baseline from the same run, and the target."""
import sys


def table(r):
    rows = _delivery_rows(r) + _enqueue_rows(r)
    smtp, http = r['enqueue_smtp']['rate'], r['enqueue_http']['rate']
    rows.append(('Enqueue, SMTP submission (smtp-source, 8 sessions)',
                 f'{smtp:,.0f} /s, CPU/msg listener {r["enqueue_smtp"]["cpu_us_per_message"]} us',
                 f'{http:,.0f} (POST /api/mails)',
                 _ok(smtp >= 1500 and smtp >= http, '>= 1,500 and >= HTTP')))
    for key, label, target in (('submission_latency', 'One SMTP submission at 100 /s', 5),
                               ('latency', 'Latency at 100 mails/s', 50),
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
    rows += memory_rows(r)
    for key, label in (('deliver_thread', 'threads'), ('deliver_process', '-k process'),
                       ('deliver_two', '2 processes')):
        rows.append((f'Worker RSS after run, {label}', _mb(r[key]['worker_rss']),
                     _mb(r['deliver_baseline']['worker_rss']), '-'))
    return _format(('Figure', 'mailq', 'Baseline', 'Target'), rows) + steal_lines(r)


def steal_lines(r, shown=3):
    """How quiet the machine was: figures taken under steal are not comparable."""
    if 'steal' not in r:
        return ''
    worst = sorted(r['steal']['steps'], key=lambda s: -s['steal_pct'])[:shown]
    return (f'\n\nCPU steal (the hypervisor running other guests): '
            f'{r["steal"]["run_pct"]:.1f} % of the run; the most in\n' +
            '\n'.join(f'  {s["steal_pct"]:5.1f} %  {s["step"]} ({s["seconds"]:.0f} s)'
                       for s in worst))


def memory_rows(r):
    huey = f'{r["enqueue_huey"].get("overhead_bytes", 0):,} B (Huey pickle, 2 KB)'
    rows = []
    for key, label in (('memory', '2 KB mail'), ('memory_html', '20 KB HTML mail')):
        mem = r[key]
        rows.append((f'Redis per queued {label}, beyond the message',
                     f'{mem["overhead_bytes"]:,} B (+{mem["message_bytes"]:,} B message; '
                     f'{mem["structure_bytes"]:,} B beyond the '
                     f'{mem["stored_body_bytes"]:,} B stored body)', huey,
                     _ok(mem['overhead_bytes'] <= 1024 and mem['structure_bytes'] <= 1024,
                         '<= 1,024 B (both)')))
    sent = r['memory_sent']
    raw = sent['message_bytes']
    rows.append(('Redis per sent 20 KB HTML mail, body kept',
                 f'{sent["sent_per_mail"]:,} B ({sent["sent_share"]:.1%} of {raw:,} B)', '-',
                 _ok(sent['sent_share'] <= 0.25, '<= 25%')))
    rows.append(('Redis per sent 20 KB HTML mail, after keep_sent_bodies',
                 f'{sent["after_body_per_mail"]:,} B', '-',
                 _ok(sent['after_body_per_mail'] <= 1024, '<= 1,024 B')))
    return rows


def exit_status(problems):
    """The exit status of a bench run: 1, after saying so, if a record check failed."""
    if problems:
        print('RECORD CHECK FAILED: ' + '; '.join(problems), file=sys.stderr)
        return 1
    return 0


def _delivery_rows(r):
    """Each delivery figure against plain Huey and as a share of the smtp-source ceiling."""
    ceiling, base = r['ceiling_smtp']['rate'], r['deliver_baseline']['rate']
    rows = [(f'Ceiling: smtp-source into smtp-sink, {r["ceiling_smtp"]["sessions"]} reused '
             'sessions', f'{ceiling:,.0f} mails/s', '-', '-'),
            ('Delivery, plain Huey baseline (-w 25 threads)',
             f'{base:,.0f} mails/s ({base / ceiling:.0%} of ceiling)', '-', '-')]
    for key, label, times in (('deliver_thread', 'Delivery, mailq -w 25 threads', 3),
                              ('deliver_process', 'Delivery, mailq -w 25 -k process', 6),
                              ('deliver_two', 'Delivery, 2 mailq processes x 25 threads', 3)):
        rate = r[key]['rate']
        ratio = r[key].get('ratio', rate / base)    # taken in turn with the baseline
        rows.append((label, f'{rate:,.0f} mails/s ({ratio:.2f}x{_pairs(r[key])}, '
                            f'{rate / ceiling:.0%} of ceiling){_redis_share(r[key])}',
                     f'{base:,.0f}', _ok(ratio >= times, f'>= {times}x baseline')))
    rows += _placement_rows(r, base)
    for key, label, extra, target in (
            ('deliver_rate', '[smtp] rate not binding', '', 0.95),
            ('deliver_slow_group', 'the others, 20 mails for a 2/s group among them', '', 0.8),
            ('deliver_webhooks', 'one webhook endpoint (every event)', 'events_per_s', 0.9)):
        if key not in r:
            continue
        pair = r[key]
        events = f', {pair[extra]:,.0f} events/s' if extra else ''
        rows.append((f'Delivery, -w 25 threads, {label}; {len(pair["pair_ratios"])} alternating '
                     'pairs', f'{pair["with"]:,.0f} mails/s (median pair {pair["ratio"]:.3f}x'
                     f'{_pairs(pair)}){events}',
                     f'{pair["without"]:,.0f}', _ok(pair['ratio'] >= target,
                                                    f'>= {target:.0%} of without')))
    return rows


def _placement_rows(r, base):
    """For comparison, no target: what keeping one process on one CPU is worth alone."""
    if 'deliver_baseline_one_cpu' not in r:
        return []
    pinned, kernel = r['deliver_baseline_one_cpu']['rate'], r['deliver_thread_kernel']['rate']
    thread = r['deliver_thread']['rate']
    return [('Delivery, plain Huey kept on one CPU (taskset), for comparison',
             f'{pinned:,.0f} mails/s ({pinned / base:.2f}x; mailq threads {thread / pinned:.2f}x '
             'it)', f'{base:,.0f}', '-'),
            ('Delivery, mailq -w 25 threads placed by the kernel (cpu_affinity = none)',
             f'{kernel:,.0f} mails/s ({kernel / base:.2f}x)', f'{base:,.0f}', '-')]


def _enqueue_rows(r):
    """HTTP figures against the minimal app's rate; send() and the batch against Huey's
    task() calls."""
    ceiling, huey_calls = r['ceiling_http'], r['enqueue_huey']['rate']
    top = ceiling['rate']
    rows = [('Ceiling: minimal WSGI app, one LPUSH per POST (8 clients)',
             f'{top:,.0f} req/s{_cpu(ceiling)}', '-', '-')]
    for key, label, target in (
            ('enqueue_http', 'Enqueue, POST /api/mails (8 clients)', 2500),
            ('enqueue_http2', 'Enqueue, POST /api/mails, 2 web processes', None)):
        rate = r[key]['rate']
        share = r[key].get('ratio', rate / top)     # alternated with the ceiling: its pairs
        rows.append((label, f'{rate:,.0f} req/s ({share:.0%} of ceiling{_pairs(r[key])})'
                     f'{_cpu(r[key])}', f'{top:,.0f}',
                     _ok(rate >= target and share >= 0.7, f'>= {target:,} and >= 70%')
                     if target else '-'))
    send, batch = r['enqueue_send'], r['enqueue_batch']
    send_ratio = send.get('ratio', send['rate'] / huey_calls)
    rows += [('Enqueue, mailq.send()',
              f'{send["rate"]:,.0f} /s ({send_ratio:.2f}x{_pairs(send)}){_split(send)}',
              f'{huey_calls:,.0f} (Huey task(){_split(r["enqueue_huey"])})',
              _ok(send_ratio >= 0.8, '>= 0.8x'))]
    if 'enqueue_accept_alone' in r:
        alone = r['enqueue_accept_alone']
        rows.append(('  floor: accept.lua alone (mail composed, arguments built before)',
                     f'{alone["rate"]:,.0f} /s ({alone["rate"] / huey_calls:.2f}x){_split(alone)}',
                     f'{huey_calls:,.0f}', '-'))
    rows.append(('Enqueue, POST /api/mails/batch x1000',
                 f'{batch["rate"]:,.0f} mails/s ({batch["rate"] / huey_calls:.2f}x)'
                 f'{_batch_split(batch)}', f'{huey_calls:,.0f} (Huey task())',
                 _ok(batch['rate'] >= 20000, '>= 20,000')))
    return rows


def _redis_share(run):
    """'; Redis scripts 95 us a mail (one Redis: 10,526/s)': the one Redis every worker
    shares, and so the rate it bounds a cluster of workers to."""
    us = run.get('redis_scripts_us_per_mail')
    return f'; Redis scripts {us:.0f} us a mail (one Redis: {1e6 / us:,.0f}/s)' if us else ''


def _pairs(figure):
    """'; pairs 0.51 0.55 0.49': the alternated pairs' ratios behind a median ratio."""
    ratios = figure.get('pair_ratios')
    return '; pairs ' + ' '.join(f'{x:.2f}' for x in ratios) if ratios else ''


def _split(figure):
    """Redis's own time and the caller's CPU, a call (bench/enqueue.py's _timed)."""
    if 'redis_us' not in figure:
        return ''
    return (f'; Redis {figure["redis_us"]:.0f} us + caller CPU {figure["client_cpu_us"]:.0f} us '
            'a call')


def _batch_split(batch):
    if 'redis_us' not in batch:
        return ''
    return (f'; Redis {batch["redis_us"]:.0f} us + web CPU {batch["web_cpu_us"]:.0f} us a mail '
            f'(Redis alone: {1e6 / max(batch["redis_us"], 1):,.0f} mails/s)')


def _cpu(figure):
    cpu = figure.get('cpu_us_per_request')
    return ', CPU/req ' + ' '.join(f'{k} {v} us' for k, v in cpu.items()) if cpu else ''


def _ok(met, text):
    return f'{text} {"OK" if met else "MISSED"}'


def _mb(n):
    return f'{n / 2 ** 20:,.0f} MiB'


def _format(header, rows):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda row: ' | '.join(str(c).ljust(w) for c, w in zip(row, widths))   # noqa: E731
    return '\n'.join([line(header), '-+-'.join('-' * w for w in widths)] + [line(r) for r in rows])
