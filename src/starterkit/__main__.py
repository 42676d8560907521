"""``python -m starterkit`` runs the CLI."""

from starterkit.cli import main

main()
