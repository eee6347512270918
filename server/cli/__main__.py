"""`python -m server.cli`: the same as the `pow-mcp` command."""

import sys

from server.cli import main

sys.exit(main())
