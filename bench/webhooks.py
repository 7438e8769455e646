"""`python -m bench.webhooks [MAILS] [ROUNDS]`: delivery with one webhook endpoint taking
every event (a local receiver) against delivery without, plus events delivered per
second. Runs alternate, so both see the same machine load (delivery.alternating)."""
import asyncio
import re
import statistics
import sys
import threading
import time

from mailq.config import load
from mailq.runtime import Runtime

from .delivery import THREADS, alternating, mailq_run
from .env import BenchEnv, free_port


class Receiver:
    """A local endpoint that answers every POST 200 and notes when it came: an asyncio
    HTTP/1.1 server of a few lines, so that its own CPU (it shares the 2 cores with the
    worker) stays small beside the dispatcher's, as smtp-sink's does beside delivery."""

    def __init__(self):
        self.times = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _serve(self, ready):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.loop.create_server(
            lambda: _Counting(self.times), '127.0.0.1', self.port))
        ready.set()
        self.loop.run_forever()

    def wait(self, count, timeout=120):
        deadline = time.monotonic() + timeout
        while len(self.times) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.times)


class _Counting(asyncio.Protocol):
    """Reads each request by its Content-Length (the dispatcher always sends one)."""
    REPLY = b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'
    LENGTH = re.compile(rb'\r\ncontent-length:\s*(\d+)', re.I)

    def __init__(self, times):
        self.times = times
        self.buffer = b''

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b'\r\n\r\n')
            if end < 0:
                return
            found = self.LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(found.group(1)) if found else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.times.append(time.monotonic())
            self.transport.write(self.REPLY)


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
