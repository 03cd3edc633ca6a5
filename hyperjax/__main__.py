"""``python -m hyperjax``: the command line (see ``hyperjax.cli``)."""

from hyperjax.cli import main

main()
