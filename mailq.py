#!/usr/bin/env python3
"""mailq entry script: `.venv/bin/python mailq.py web|worker|run|send|stats|check|cron --help`."""
import sys

from mailq.cli import main

if __name__ == '__main__':
    sys.exit(main())
