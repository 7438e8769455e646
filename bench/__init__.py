"""mailq's benchmark suite: `make bench` (about 8 minutes) or `make bench-quick` (< 60 s);
`make bench-curves` (bench/curves.py) for how cost grows, drawn as PNGs.

Everything runs on this machine against its own redis-server and Postfix's
smtp-sink; see docs/benchmark.md for what each figure means.
"""
