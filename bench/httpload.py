"""A small HTTP/1.1 keep-alive load client: `clients` connections, each sending
its requests one after another (no pipelining), on one asyncio loop."""
import asyncio
import time


async def _client(host, port, request, count, statuses, times):
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        for _ in range(count):
            started = clock()
            writer.write(request)
            head = await reader.readuntil(b'\r\n\r\n')
            status = int(head[9:12])
            length = 0
            for line in head.split(b'\r\n'):
                if line[:15].lower() == b'content-length:':
                    length = int(line[15:])
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
            if times is not None:
                times.append(clock() - started)
    finally:
        writer.close()


def post_many(port, path, body, total, clients=8, host='127.0.0.1', times=None):
    """POST `body` `total` times over `clients` keep-alive connections.
    Returns (seconds, {status: count}); `times` (a list) gets each request's seconds."""
    request = (f'POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n'
               f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n'
               ).encode() + body
    statuses = {}
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    async def main():
        await asyncio.gather(*(_client(host, port, request, n, statuses, times)
                               for n in per_client))

    started = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - started, statuses


def get(port, path, host='127.0.0.1'):
    """One GET on a fresh connection: (seconds, status, body bytes)."""
    request = f'GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n'.encode()

    async def main():
        reader, writer = await asyncio.open_connection(host, port)
        started = time.perf_counter()
        writer.write(request)
        data = await reader.read()
        elapsed = time.perf_counter() - started
        writer.close()
        return elapsed, int(data[9:12]), len(data)

    return asyncio.run(main())
