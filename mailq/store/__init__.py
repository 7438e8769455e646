"""mailq's data model in Redis: every key, state, script and container (see keys.py)."""
from .keys import Keys
from .mails import (DURATION_BUCKETS, MAX_INTERRUPTIONS, Store, _load_script,
                    delivery_metric_fields)
from .states import FINAL_STATES, STATES

__all__ = ['DURATION_BUCKETS', 'FINAL_STATES', 'Keys', 'MAX_INTERRUPTIONS', 'STATES', 'Store',
           '_load_script', 'delivery_metric_fields']
