"""Drive one CronTicker on a fast simulated clock, as one worker process would.

    python drive.py INI WORKER_ID WALL_START SIM_START SIM_END SPEED

From wall time WALL_START on (so several processes start together), the
simulated time is SIM_START + SPEED * (wall seconds since WALL_START), the
same in every process; it ticks as fast as it can until SIM_END.
The worker counts as alive (a heartbeat that never ages), as a real one would.
"""
import sys
import time

from cron_fixtures import digest
from mailq.config import load
from mailq.cron.ticker import CronTicker
from mailq.runtime import Runtime


def main(ini, worker_id, wall_start, start, end, speed):
    config = load(ini)
    digest.redis_url = config.redis.url
    rt = Runtime(config)
    rt.redis.zadd(rt.keys.workers, {worker_id: float('inf')})
    ticker = CronTicker(rt, worker_id)
    time.sleep(max(0.0, float(wall_start) - time.time()))
    while True:
        now = float(start) + float(speed) * (time.time() - float(wall_start))
        ticker.tick(min(now, float(end)))
        if now >= float(end):
            break
    rt.redis.zrem(rt.keys.workers, worker_id)


if __name__ == '__main__':
    main(*sys.argv[1:])
