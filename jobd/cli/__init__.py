"""The `jobd` command line: `main` parses the arguments and turns errors into exit codes.

entry.py    main(): exit codes, `jobd run` and `jobd check`
parser.py   the argument parser, and which module each command calls
job_commands.py  the parsers of enqueue, job and dead (the commands on single jobs)
options.py  the options every command parser shares
shared.py   what the operator commands share: a short-timeout client, tables, JSON output
status.py   jobd status
jobs.py     jobd enqueue, jobd job show | follow | abort
dead.py     jobd dead list | retry | purge
cron.py     jobd cron list
limits.py   jobd limits
config.py   jobd config show | init
keygen.py   jobd keygen
web.py      jobd web: the dashboard (jobd.web) under uvicorn
"""

from jobd.cli.entry import main

__all__ = ["main"]
