"""Run rowquant's benchmark: ``python bench/run.py [--full] [--json PATH] ...``.

The same as ``rowquant bench``; every option is that command's (``python bench/run.py --help``).
For the README table: ``python bench/run.py --full --json bench/results.json``; then
``python bench/targets.py bench/results.json`` checks the speed targets (see its docstring).
"""

import sys

from rowquant.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
