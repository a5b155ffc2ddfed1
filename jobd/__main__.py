"""`python -m jobd` is the `jobd` command."""

from jobd.cli import main

raise SystemExit(main())
