"""``python -m alignkit`` runs the CLI."""

from alignkit.cli import main

main()
