"""Command line: ``python -m pykka_registry {demo,bench,ls,observe}``
(see :mod:`pykka_registry.cli`)."""

from __future__ import annotations

import sys

from pykka_registry.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
