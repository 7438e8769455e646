"""Which SMTP replies say "slow down": the one list, used by the processor to hold a
mail and cut its limiter's rate instead of retrying it with backoff.

A throttling reply is a 421, 451 or 454 whose enhanced status code or text is a known
throttling one. The providers' own replies are in tests/test_throttle.py:
Amazon SES `454 Throttling failure: Maximum sending rate exceeded`, Gmail
`421 4.7.28 ... unusual rate ...` and `421 4.7.0 Try again later`, Microsoft
`451 4.7.650 The mail server [...] has been temporarily rate limited`.
Every other 4xx keeps today's per-mail retry; a 5xx is never a throttle.
"""
import re

CODES = (421, 451, 454)
# RFC 3463 4.7.x (security or policy status, transient): what Gmail and Microsoft use.
ENHANCED = re.compile(r'(?<![\d.])4\.7\.\d{1,3}(?![\d.])')
WORDS = re.compile(r'rate|throttl|too many|slow down|try again later', re.IGNORECASE)


def is_throttling(code, text):
    """True for a reply that asks the client to send more slowly."""
    if code not in CODES:
        return False
    text = text or ''
    return bool(ENHANCED.search(text) or WORDS.search(text))
