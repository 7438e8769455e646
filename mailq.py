#!/usr/bin/env python3
"""mailq entry script: `python mailq.py web|worker|run|send|stats|check --help`."""
import sys

from mailq.cli import main

if __name__ == '__main__':
    sys.exit(main())
