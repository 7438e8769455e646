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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 2000
    rounds = int(argv[1]) if len(argv) > 1 else 3
    env = BenchEnv().start()
    receiver = Receiver()
    plain_ini = env.ini.read_text()
    hooked = plain_ini + (f'\n[webhook:bench]\nurl = http://127.0.0.1:{receiver.port}/\n'
                          f'secret = bench-secret\n')
    rt = Runtime(load(str(env.ini)))
    without, with_hooks, event_rates = [], [], []
    try:
        for _ in range(rounds):
            env.ini.write_text(plain_ini)
            without.append(mailq_run(env, rt, count, ['-w', str(THREADS)])['rate'])
            env.ini.write_text(hooked)
            receiver.times.clear()
            result = mailq_run(env, rt, count, ['-w', str(THREADS)])
            with_hooks.append(result['rate'])
            assert not result['problems'], result['problems']
            during = len(receiver.times)
            # mailq_run stops the worker once the mails are recorded; the events still
            # waiting go out with the next worker (none is lost).
            drain = env.mailq('worker', '-w', '1')
            try:
                got = receiver.wait(count)
            finally:
                env.stop(drain)
            assert got >= count, f'{got} of {count} events arrived'
            first = receiver.times[0]
            event_rates.append(round((during - 1) / (receiver.times[during - 1] - first), 1))
    finally:
        env.ini.write_text(plain_ini)
        env.close()
    best = max(without)
    print(f'delivery without webhooks: {without} mails/s (best {best})')
    print(f'delivery with one endpoint: {with_hooks} mails/s (best {max(with_hooks)}, '
          f'{max(with_hooks) / best:.0%} of without)')
    print(f'events delivered while delivering: {event_rates} events/s (every event arrived)')


if __name__ == '__main__':
    main()
