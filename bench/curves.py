"""`python -m bench.curves [--quick]`: how cost grows. Delivery rate against `-w` and
against mail size; enqueue rate and latency against stored history; Redis memory
against stored mails. Writes curves.json (the numbers, with the machine, the commit and
the load average at each point) and one PNG a curve: into docs/benchmark/ (full, 5 to 7
minutes on 2 cores), bench/curves/ with --quick (about a minute, untracked).

The history is sent mail as most of a week of it sits in Redis: each mail through
accept.lua and then finish.lua as a worker thread records a 250, its body key deleted
as its expiry after keep_sent_bodies does. Both scripts' calls are Store's own,
streamed to `redis-cli --pipe` (bench/search.py's Recorder) while Python builds the
next chunk.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import mailq
from mailq.config import load
from mailq.runtime import Runtime

from . import delivery, mails, search
from .env import REPO, BenchEnv
from .httpload import post_many
from .latency import summary
from .report import exit_status

FULL = {'workers': [1, 5, 25, 100], 'deliver': 5000,
        'sizes': {'2 KB': 5000, '20 KB': 5000, '200 KB': 2000, '2 MB attachment': 200},
        'history': [0, 100_000, 1_000_000], 'http': 10_000, 'send': 5000,
        'queued': 100_000, 'sent_html': 50_000, 'chunk': 50_000}
QUICK = {'workers': [1, 5, 25, 100], 'deliver': 500,
         'sizes': {'2 KB': 500, '20 KB': 500, '200 KB': 200, '2 MB attachment': 30},
         'history': [0, 10_000, 50_000], 'http': 2000, 'send': 1000,
         'queued': 10_000, 'sent_html': 5000, 'chunk': 5000}
TINY = {'workers': [1, 25], 'deliver': 40,
        'sizes': {'2 KB': 40, '20 KB': 40, '200 KB': 20, '2 MB attachment': 5},
        'history': [0, 500, 2000], 'http': 200, 'send': 100,
        'queued': 1000, 'sent_html': 500, 'chunk': 500}
OUT = {'full': REPO / 'docs' / 'benchmark', 'quick': REPO / 'bench' / 'curves',
       'tiny': REPO / 'bench' / 'curves'}
WORKER, THREAD = 'bench:1:history', 't1'
SAMPLES = 10          # memory readings along each fill


def run(sizes, mode):
    env = BenchEnv().start()
    results = {'mode': mode, 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
               'commit': _commit(), 'sizes': sizes}
    try:
        rt = Runtime(load(str(env.ini)))
        results['machine'] = _machine(env)
        step = _stepper()
        results['delivery_workers'] = []
        for threads in sizes['workers']:
            step(f'delivery: {sizes["deliver"]:,} mails, -w {threads}')
            point = delivery.mailq_run(env, rt, sizes['deliver'], ['-w', str(threads)])
            results['delivery_workers'].append({'workers': threads, **point, 'load': _load()})
        results['delivery_size'] = []
        for label, template in _sized(rt):
            count = sizes['sizes'][label]
            step(f'delivery: {count:,} mails of {label} ({len(template.raw):,} B), -w 25')
            point = delivery.mailq_run(env, rt, count, ['-w', '25'], template=template)
            results['delivery_size'].append({'size': label, 'bytes': len(template.raw), **point,
                                             'mb_per_s': round(point['rate'] * len(template.raw)
                                                               / 1e6, 1), 'load': _load()})
        step(f'memory: {sizes["queued"]:,} queued 2 KB mails')
        results['memory'] = {'queued_2kb': queued_memory(env, rt, sizes['queued'])}
        step(f'memory: {sizes["sent_html"]:,} sent 20 KB HTML mails, body kept')
        results['memory']['sent_html_body_kept'], results['sent_fill_problems'] = sent_memory(
            env, rt, sizes['sent_html'], mails.html_mail(rt), keep_body=True)
        results['enqueue_history'], results['memory']['history_2kb'], results['history_fill'] = \
            history(env, rt, sizes, step)
    finally:
        env.close()
    results['machine']['load_after'] = _load()
    results['total_seconds'] = round(time.monotonic() - START, 1)
    return results


def _sized(rt):
    return [('2 KB', mails.sample_mail(rt)), ('20 KB', mails.html_mail(rt)),
            ('200 KB', mails.html_mail(rt, lines=300)),
            ('2 MB attachment', mails.attachment_mail(rt))]


# -- memory


def queued_memory(env, rt, count):
    """used_memory along `count` queued 2 KB mails (mails.fill_queued: accept.lua), each
    with its own recipient and Message-ID as the history has."""
    env.flush()
    readings, step = _Readings(env), max(1, count // SAMPLES)
    for first in range(0, count, step):
        mails.fill_queued(rt, min(step, count - first), first=first)
        readings.take(min(first + step, count))
    return readings.series()


def sent_memory(env, rt, count, template, keep_body):
    env.flush()
    readings = _Readings(env)
    _, probes = fill_history(rt, 0, count, template, keep_body, max(1, count // SAMPLES),
                             readings.take)
    return readings.series(), check_history(rt, probes, keep_body)


class _Readings:
    """used_memory over an empty store, after each fill step: [[mails, bytes, B/mail]].
    `extra` is memory added meanwhile that is not the fill's (the enqueue runs)."""

    def __init__(self, env):
        self.client = env.client()
        self.empty = self._used()
        self.extra = 0
        self.points = []

    def _used(self):
        return self.client.info('memory')['used_memory']

    def take(self, stored):
        used = self._used() - self.empty - self.extra
        self.points.append([stored, used, round(used / stored) if stored else 0])

    def series(self):
        return self.points


# -- the history fill


def fill_history(rt, start, stop, template=None, keep_body=False, chunk=50_000, taken=None):
    """Mails number start to stop - 1 stored as sent (module docstring); `taken(n)` after
    each chunk, with n mails stored. Returns the seconds it took and the first mail id of
    each chunk (to check)."""
    store, keys = rt.store, rt.keys
    template = template or mails.sample_mail(rt)
    for script in (store.scripts.accept, store.scripts.finish):
        rt.redis.script_load(script.script)
    started, recorder, running, probes = time.perf_counter(), search.Recorder(), None, []
    for first in range(start, stop, chunk):
        last = min(first + chunk, stop)
        for n in range(first, last):
            mail = mails.numbered(template, n)
            if n == first:
                probes.append(mail.id)
            task = rt.new_task(mail.id, mail.queue)
            store.accept(mail, task, pipe=recorder)
            attempt = {'at': time.time(), 'worker': WORKER, 'outcome': 'sent', 'code': 250,
                       'reply': f'2.0.0 Ok: queued as {n:X}', 'duration': 0.002}
            store.finish(mail.id, task, WORKER, THREAD, 'sent', attempt, pipe=recorder)
            if not keep_body:
                recorder.command('DEL', keys.body(mail.id))
        # accept.lua queued each task; finish.lua recorded it sent without a fetch
        recorder.command('DEL', keys.queue(template.queue), keys.wake(template.queue))
        if running:
            running.wait(taken)
        running = _Piped(rt, recorder.take(), last)
    if running:
        running.wait(taken)
    return time.perf_counter() - started, probes


def check_history(rt, ids, keep_body=False):
    """What the fill must have left of each mail: a sent record, one attempt, and a body
    only with keep_body."""
    pipe = rt.redis.pipeline(transaction=False)
    for mail_id in ids:
        pipe.hget(rt.keys.record(mail_id), 'status')
        pipe.get(rt.keys.attempts(mail_id))
        pipe.exists(rt.keys.body(mail_id))
    replies = pipe.execute()
    found = [(status, (attempts or b'').count(b'\n'), body)
             for status, attempts, body in zip(replies[::3], replies[1::3], replies[2::3])]
    bad = [f for f in found if f != (b'sent', 1, int(keep_body))]
    return [f'history: {len(bad)} of {len(ids)} probed mails not as sent: {bad[:3]}'] if bad \
        else []


class _Piped:
    """One chunk on its way through `redis-cli --pipe`, written from a thread so that
    Python builds the next chunk meanwhile."""

    def __init__(self, rt, data, stored):
        self.cli, self.stored = search.pipe_cli(rt), stored
        self.writer = threading.Thread(target=self._write, args=(data,), daemon=True)
        self.writer.start()

    def _write(self, data):
        self.cli.stdin.write(data)
        self.cli.stdin.close()

    def wait(self, taken):
        self.writer.join()
        search.wait_cli(self.cli)
        if taken:
            taken(self.stored)


# -- enqueue against history


def history(env, rt, sizes, step):
    """At each history size: POST /api/mails (8 keep-alive clients) and mailq.send()
    (one caller); rate and per-request latency. Memory is read along the fill."""
    env.flush()
    readings, points, filled, fill_seconds, probes = _Readings(env), [], 0, 0.0, []
    web = env.web()
    try:
        for target in sizes['history']:
            if target > filled:
                step(f'history: storing mails {filled:,} to {target:,} (accept + finish)')
                seconds, firsts = fill_history(rt, filled, target, chunk=sizes['chunk'],
                                               taken=readings.take)
                fill_seconds, probes, filled = fill_seconds + seconds, probes + firsts, target
            step(f'enqueue at {target:,} stored mails')
            before = readings._used()
            points.append({'stored': target, 'http': enqueue_http(env, sizes['http']),
                           'send': enqueue_send(sizes['send']), 'load': _load()})
            readings.extra += readings._used() - before
    finally:
        env.stop(web)
    top = sizes['history'][-1]
    fill = {'mails': top, 'seconds': round(fill_seconds, 1),
            'us_per_mail': round(fill_seconds / top * 1e6, 1) if top else 0,
            'probed': len(probes), 'problems': check_history(rt, probes)}
    return points, readings.series(), fill


def enqueue_http(env, count, clients=8):
    body = json.dumps(mails.request(1)).encode()
    post_many(env.web_port, '/api/mails', body, 200, clients)      # warm up
    times = []
    seconds, statuses = post_many(env.web_port, '/api/mails', body, count, clients,
                                  times=times)
    return {'rate': round(count / seconds, 1), **summary(times), 'statuses': statuses}


def enqueue_send(count):
    times, clock = [], time.perf_counter
    for n in range(count):
        started = clock()
        mailq.send(**mails.request(n))
        times.append(clock() - started)
    return {'rate': round(count / sum(times), 1), **summary(times)}


# -- the pictures


def draw(results, out):
    """One PNG a curve into `out` (matplotlib's Agg backend: no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    note = (f'{results["date"]}, {results["commit"]}, {results["machine"]["cpus"]} cores, '
            f'load {results["machine"]["load_before"]:.1f} to '
            f'{results["machine"]["load_after"]:.1f}, {results["mode"]} run')
    written = []
    for name, plot in (('delivery_workers', _plot_workers), ('delivery_size', _plot_size),
                       ('enqueue_history', _plot_history), ('memory', _plot_memory)):
        figure = pyplot.figure(figsize=(9, 4.6), dpi=100)
        plot(figure, results)
        figure.text(0.99, 0.01, note, ha='right', va='bottom', fontsize=7, color='#6b7280')
        figure.tight_layout(rect=(0, 0.03, 1, 1))
        path = Path(out) / f'{name}.png'
        figure.savefig(path)
        pyplot.close(figure)
        written.append(path)
    return written


def _plot_workers(figure, r):
    points = r['delivery_workers']
    rate, cpu = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    threads = [p['workers'] for p in points]
    rate.plot(threads, [p['rate'] for p in points], 'o-')
    _label(rate, threads, [p['rate'] for p in points], '{:,.0f}')
    rate.set(xscale='log', xticks=threads, xticklabels=threads, xlabel='worker threads (-w)',
             ylabel='mails/s', title='Delivery rate against -w (2 KB mail)', ylim=(0, None))
    cpu.plot(threads, [p['cpu_us_per_mail'] for p in points], 'o-', color='tab:orange')
    _label(cpu, threads, [p['cpu_us_per_mail'] for p in points], '{:,.0f}')
    cpu.set(xscale='log', xticks=threads, xticklabels=threads, xlabel='worker threads (-w)',
            ylabel='CPU us a mail (worker + Redis)', title='CPU a mail', ylim=(0, None))


def _plot_size(figure, r):
    points = r['delivery_size']
    size = [p['bytes'] / 1024 for p in points]
    rate, volume = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    rate.plot(size, [p['rate'] for p in points], 'o-')
    _label(rate, size, [p['rate'] for p in points], '{:,.0f}')
    rate.set(xscale='log', yscale='log', xlabel='message size (KiB, log)',
             ylabel='mails/s (log)', title='Delivery rate against mail size (-w 25)')
    volume.plot(size, [p['mb_per_s'] for p in points], 'o-', color='tab:green')
    _label(volume, size, [p['mb_per_s'] for p in points], '{:,.1f}')
    volume.set(xscale='log', xlabel='message size (KiB, log)', ylabel='MB/s into the sink',
               title='Bytes delivered a second', ylim=(0, None))
    for axes in (rate, volume):
        axes.set_xticks(size, [p['size'] for p in points], fontsize=8)


def _plot_history(figure, r):
    points = r['enqueue_history']
    spots = range(len(points))
    names = [_count(p['stored']) for p in points]
    rate, latency = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for kind, label, color in (('http', 'POST /api/mails, 8 clients', 'tab:blue'),
                               ('send', 'mailq.send()', 'tab:orange')):
        rate.plot(spots, [p[kind]['rate'] for p in points], 'o-', label=label, color=color)
        _label(rate, spots, [p[kind]['rate'] for p in points], '{:,.0f}')
        latency.plot(spots, [p[kind]['p99_ms'] for p in points], 'o-', color=color,
                     label=f'{label}, p99')
        latency.plot(spots, [p[kind]['p50_ms'] for p in points], 'o--', alpha=0.5,
                     color=color, label=f'{label}, p50')
    rate.set(xticks=spots, xticklabels=names, xlabel='mails stored (sent history)',
             ylabel='mails/s', title='Enqueue rate against history', ylim=(0, None))
    latency.set(xticks=spots, xticklabels=names, xlabel='mails stored (sent history)',
                ylabel='ms a request', title='Enqueue latency against history', ylim=(0, None))
    rate.legend(fontsize=8)
    latency.legend(fontsize=7)


def _plot_memory(figure, r):
    import matplotlib.ticker
    total, each = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for key, label in (('sent_html_body_kept', 'sent 20 KB HTML, body kept'),
                       ('queued_2kb', 'queued 2 KB mail'),
                       ('history_2kb', 'sent, after keep_sent_bodies')):
        points = [p for p in r['memory'][key] if p[0]]
        mails_ = [p[0] for p in points]
        total.plot(mails_, [p[1] / 2 ** 20 for p in points], 'o-', markersize=3, label=label)
        each.plot(mails_, [p[2] for p in points], 'o-', markersize=3, label=label)
        each.annotate(f'{points[-1][2]:,} B', (mails_[-1], points[-1][2]), fontsize=8,
                      textcoords='offset points', xytext=(-10, 6), ha='right')
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}')
    counts = matplotlib.ticker.FuncFormatter(lambda v, _: _count(int(v)))
    for axes in (total, each):
        axes.set_xscale('log')
        axes.xaxis.set_major_formatter(counts)
    total.set_yscale('log')
    total.yaxis.set_major_formatter(plain)
    total.yaxis.set_minor_formatter(plain)
    total.set(xlabel='mails stored (log)',
              ylabel='Redis used_memory, MiB (log)', title='Redis memory against stored mails')
    each.set(xlabel='mails stored (log)', ylabel='bytes a mail',
             title='Redis bytes a mail', ylim=(0, None))
    total.legend(fontsize=8)
    each.legend(fontsize=8)


def _label(axes, xs, ys, fmt):
    for x, y in zip(xs, ys):
        axes.annotate(fmt.format(y), (x, y), textcoords='offset points', xytext=(0, 6),
                      ha='center', fontsize=8)


def _count(n):
    return f'{n // 1_000_000}M' if n >= 1_000_000 and n % 1_000_000 == 0 else \
        f'{n // 1000}k' if n >= 1000 and n % 1000 == 0 else f'{n:,}'


# -- run info


def _machine(env):
    info = env.client().info('server')
    return {'python': platform.python_version(), 'cpus': os.cpu_count(),
            'platform': platform.platform(), 'redis': info['redis_version'],
            'load_before': _load()}


def _load():
    return round(os.getloadavg()[0], 2)


def _commit():
    try:
        head = subprocess.run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain', '-uno'],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return head + ('+changes' if dirty else '')


def _stepper():
    def step(text):
        print(f'[{time.monotonic() - START:6.1f}s] load {_load():5.2f}  {text}',
              file=sys.stderr, flush=True)
    return step


def problems(results):
    return [p for key in ('delivery_workers', 'delivery_size') for point in results[key]
            for p in point['problems']] + results['sent_fill_problems'] + \
        results['history_fill']['problems']


def table(r):
    """The figures as text, for the terminal."""
    lines = ['Delivery against -w (2 KB):  ' + ', '.join(
        f'-w {p["workers"]}: {p["rate"]:,.0f}/s' for p in r['delivery_workers']),
        'Delivery against size (-w 25): ' + ', '.join(
        f'{p["size"]}: {p["rate"]:,.0f}/s ({p["mb_per_s"]} MB/s)' for p in r['delivery_size'])]
    for p in r['enqueue_history']:
        lines.append(f'Enqueue at {p["stored"]:>9,} stored: POST {p["http"]["rate"]:,.0f}/s '
                     f'p99 {p["http"]["p99_ms"]} ms; send() {p["send"]["rate"]:,.0f}/s '
                     f'p99 {p["send"]["p99_ms"]} ms')
    for key, points in r['memory'].items():
        last = points[-1]
        lines.append(f'Memory {key}: {last[2]:,} B a mail at {last[0]:,} mails '
                     f'({last[1] / 2 ** 20:,.0f} MiB)')
    fill = r['history_fill']
    lines.append(f'History fill: {fill["mails"]:,} mails in {fill["seconds"]} s '
                 f'({fill["us_per_mail"]} us a mail)')
    return '\n'.join(lines)


START = time.monotonic()


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bench.curves', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument('--quick', action='store_true', help='small sizes, under 2 minutes')
    sizes.add_argument('--tiny', action='store_true',
                       help='the smallest sizes, seconds (tests/test_bench_curves.py)')
    parser.add_argument('--out', help='folder for curves.json and the PNGs')
    parser.add_argument('--draw', action='store_true',
                        help='only draw the PNGs again from the folder\'s curves.json')
    args = parser.parse_args(argv)
    mode = 'quick' if args.quick else 'tiny' if args.tiny else 'full'
    out = Path(args.out) if args.out else OUT[mode]
    out.mkdir(parents=True, exist_ok=True)
    if args.draw:
        results = json.loads((out / 'curves.json').read_text())
    else:
        results = run({'full': FULL, 'quick': QUICK, 'tiny': TINY}[mode], mode)
        (out / 'curves.json').write_text(json.dumps(results, indent=2) + '\n')
    for path in draw(results, out):
        print(f'wrote {path}')
    print(table(results))
    return exit_status(problems(results))


if __name__ == '__main__':
    sys.exit(main())
