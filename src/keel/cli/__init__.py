"""keel's command line (Typer + Rich); the ``keel`` console script is :func:`keel.cli.main.main`.

This package deliberately imports nothing, so ``python -m keel.cli.main`` runs the
module only once.
"""
