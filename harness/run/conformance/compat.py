"""What differs between Dynamo releases' entry points, so one driver drives them all.

Imported by driver.py from its own directory (it runs as a script with a conformance env's python):
the standard library only.
"""

from __future__ import annotations

import inspect
import sys


def call_parse_args(parse_args, prog: str, argv: list[str]):
    """Dynamo's `parse_args(argv)`; a release whose `parse_args()` reads `sys.argv` (1.0.x) gets it there."""
    if inspect.signature(parse_args).parameters:
        return parse_args(argv)
    old = sys.argv
    sys.argv = [prog, *argv]
    try:
        return parse_args()
    finally:
        sys.argv = old
