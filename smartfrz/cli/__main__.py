"""`python -m smartfrz.cli`: the `smartfrz` command."""

from smartfrz.cli import main

raise SystemExit(main())
