"""mailq's data model in Redis: every key (keys.py), state (states.py), Lua script
(scripts/) and container (containers.py), and the reads and state changes of mails
(mails.py), workers (workers.py), counters (stats.py) and cron jobs (cron.py).

Nothing outside this package sends Redis commands, except redisconn.py (connections),
the benchmark and the tests.
"""
from .keys import Keys
from .mails import DURATION_BUCKETS, MAX_INTERRUPTIONS, Store, delivery_metric_fields

__all__ = ['DURATION_BUCKETS', 'Keys', 'MAX_INTERRUPTIONS', 'Store', 'delivery_metric_fields']
