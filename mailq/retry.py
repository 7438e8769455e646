"""When to try a failed mail again, and when to give up.

Exponential backoff with jitter: retry_base * retry_factor**(n-1), capped at
retry_max_delay, plus up to retry_jitter of itself at random. The defaults
(60 s, x2, 6 h cap, 25 retries) retry within minutes at first and give up after
about 4.4 days, as RFC 5321 4.5.4.1 asks (at least 4-5 days).
"""
import random


def retry_delay(failed_attempts, cfg, rng=random):
    """Seconds to wait after the `failed_attempts`-th failure (1-based)."""
    base = cfg.retry_base * cfg.retry_factor ** (failed_attempts - 1)
    delay = min(base, cfg.retry_max_delay)
    return delay * (1 + cfg.retry_jitter * rng.random())


def gives_up(failed_attempts, cfg):
    return failed_attempts > cfg.max_retries

