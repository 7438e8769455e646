"""`python -m bench.webhooks [MAILS] [ROUNDS]`: delivery with one webhook endpoint taking
every event (a local receiver) against delivery without, plus events delivered per
second. Runs alternate, so both see the same machine load."""
import http.server
import sys
import threading
import time

from mailq.config import load
from mailq.runtime import Runtime

from .delivery import THREADS, mailq_run
from .env import BenchEnv, free_port


class Receiver:
    def __init__(self):
        self.times = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):
                self.rfile.read(int(self.headers.get('Content-Length') or 0))
                owner.times.append(time.monotonic())
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):
                pass
        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count, timeout=120):
        deadline = time.monotonic() + timeout
        while len(self.times) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.times)


def hooked_ini(plain_ini, receiver):
    return plain_ini + (f'\n[webhook:bench]\nurl = http://127.0.0.1:{receiver.port}/\n'
                        f'secret = bench-secret\n')


def pair(env, rt, receiver, count):
    """Delivery without webhooks, then with one endpoint taking every event, back to
    back: {'without', 'with', 'ratio', 'events_per_s', 'problems'}. Every event must
    arrive (the ones still waiting when the mails are done go out with a next worker)."""
    plain_ini = env.ini.read_text()
    try:
        without = mailq_run(env, rt, count, ['-w', str(THREADS)])
        env.ini.write_text(hooked_ini(plain_ini, receiver))
        receiver.times.clear()
        hooked = mailq_run(env, rt, count, ['-w', str(THREADS)])
        during = len(receiver.times)
        drain = env.mailq('worker', '-w', '1')
        try:
            got = receiver.wait(count)
        finally:
            env.stop(drain)
    finally:
        env.ini.write_text(plain_ini)
    problems = without['problems'] + hooked['problems']
    if got < count:
        problems.append(f'{got} of {count} events arrived')
    events_per_s = (during - 1) / (receiver.times[during - 1] - receiver.times[0]) \
        if during > 1 else 0.0
    return {'without': without['rate'], 'with': hooked['rate'],
            'ratio': round(hooked['rate'] / without['rate'], 3),
            'events_per_s': round(events_per_s, 1),
            'cpu_us_per_mail': {'without': without['cpu_us_per_mail'],
                                'with': hooked['cpu_us_per_mail']},
            'problems': problems}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 2000
    rounds = int(argv[1]) if len(argv) > 1 else 3
    env = BenchEnv().start()
    receiver = Receiver()
    rt = Runtime(load(str(env.ini)))
    runs = []
    try:
        for _ in range(rounds):
            runs.append(pair(env, rt, receiver, count))
            assert not runs[-1]['problems'], runs[-1]['problems']
    finally:
        env.close()
    without, with_hooks = [r['without'] for r in runs], [r['with'] for r in runs]
    print(f'delivery without webhooks: {without} mails/s (best {max(without)})')
    ratios = ', '.join(f'{r["ratio"]:.0%}' for r in runs)
    print(f'delivery with one endpoint: {with_hooks} mails/s (best {max(with_hooks)}, '
          f'{max(with_hooks) / max(without):.0%} of without; each pair {ratios})')
    print(f'events delivered while delivering: {[r["events_per_s"] for r in runs]} events/s '
          f'(every event arrived)')
    print('CPU a mail (worker tree, its dispatcher included, + Redis), without / with: '
          + ', '.join(f'{c["without"]} / {c["with"]} us' for c in
                      (r['cpu_us_per_mail'] for r in runs)))


if __name__ == '__main__':
    main()
