"""`python -m bench.webhooks [MAILS] [ROUNDS]`: delivery with one webhook endpoint taking
every event (a local receiver) against delivery without, plus events delivered per
second. Runs alternate, so both see the same machine load (delivery.alternating)."""
import http.server
import statistics
import sys
import threading
import time

from mailq.config import load
from mailq.runtime import Runtime

from .delivery import THREADS, alternating, mailq_run
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


def pair(env, rt, receiver, count, rounds=1):
    """Delivery without webhooks and with one endpoint taking every event, alternating
    `rounds` times (delivery.alternating), plus the events delivered per second while
    delivering. Every event must arrive: those still waiting when a run's mails are done
    go out with a next worker, before the next run empties Redis."""
    plain_ini = env.ini.read_text()
    rates = []

    def hooked():
        env.ini.write_text(hooked_ini(plain_ini, receiver))
        try:
            start = len(receiver.times)
            run = mailq_run(env, rt, count, ['-w', str(THREADS)])
            during = receiver.times[start:]
            if len(during) > 1:
                rates.append((len(during) - 1) / (during[-1] - during[0]))
            got = _drain(env, receiver, start + count) - start
            if got < count:
                run['problems'].append(f'{got} of {count} events arrived')
            return run
        finally:
            env.ini.write_text(plain_ini)

    receiver.times.clear()
    result = alternating(rounds, lambda: mailq_run(env, rt, count, ['-w', str(THREADS)]),
                         hooked)
    result['events_per_s'] = round(statistics.median(rates), 1) if rates else 0.0
    return result


def _drain(env, receiver, total):
    """Events received in all, once `total` have come or a worker found no more."""
    drain = env.mailq('worker', '-w', '1')
    try:
        return receiver.wait(total)
    finally:
        env.stop(drain)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 2000
    rounds = int(argv[1]) if len(argv) > 1 else 3
    env = BenchEnv().start()
    receiver = Receiver()
    rt = Runtime(load(str(env.ini)))
    try:
        result = pair(env, rt, receiver, count, rounds)
        assert not result['problems'], result['problems']
    finally:
        env.close()
    print(f'delivery without webhooks, median of {rounds}: {result["without"]} mails/s')
    print(f'delivery with one endpoint, median of {rounds}: {result["with"]} mails/s '
          f'({result["ratio"]:.0%} of without; each pair '
          + ', '.join(f'{r:.0%}' for r in result['pair_ratios']) + ')')
    print(f'events delivered while delivering: median {result["events_per_s"]} events/s '
          f'(every event arrived)')
    cpu = result['cpu_us_per_mail']
    print(f'CPU a mail (worker tree, its dispatcher included, + Redis), without / with: '
          f'{cpu["without"]} / {cpu["with"]} us (medians of {rounds})')


if __name__ == '__main__':
    main()
