"""``python -m planner``: the ``disagg`` command, runnable from a source checkout without installing."""

from planner.cli import main

main()
