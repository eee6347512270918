"""Save time and memory of the JSON job store at 1,000 and 10,000 records.

Usage: python benchmarks/store.py [--sizes 1000 10000] [--repeat 15] [--dir DIR]
Each figure is printed with its ratio to a naive json.dumps + write of the same records
measured in the same run (see store/bench.py for what each line measures).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this directory comes first on sys.path, and this file's name would
# shadow the `store` package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from store.bench import main  # noqa: E402

if __name__ == "__main__":
    main()
