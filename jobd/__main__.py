"""`python -m jobd` is the `jobd` command."""

from jobd.cli.entry import main

raise SystemExit(main())
