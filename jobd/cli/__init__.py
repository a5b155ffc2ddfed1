"""The `jobd` command line: `main` parses the arguments and turns errors into exit codes.

entry.py    main(): exit codes, `jobd run` and `jobd check`
parser.py   the argument parser, and which module each command calls
shared.py   what the operator commands share: a short-timeout client, tables, JSON output
status.py   jobd status
jobs.py     jobd enqueue, jobd job show | abort
dead.py     jobd dead list | retry | purge
cron.py     jobd cron list
config.py   jobd config show | init
keygen.py   jobd keygen
web.py      jobd web: the dashboard (jobd.web) under uvicorn
"""

from jobd.cli.entry import main

__all__ = ["main"]
