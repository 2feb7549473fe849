"""``python -m genloom`` runs the CLI."""

from genloom.cli import main

main()
