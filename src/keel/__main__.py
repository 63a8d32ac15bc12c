"""``python -m keel``: the same as the ``keel`` command."""

from __future__ import annotations

from keel.cli.main import main

if __name__ == "__main__":
    main()
