"""`python -m pow_mcp.server.cli`: the same as the `pow-mcp` command."""

import sys

from pow_mcp.server.cli import main

sys.exit(main())
