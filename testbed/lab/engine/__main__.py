"""``python -m testbed.lab.engine CONFIG_JSON``: run one engine process (started by the lab)."""

import sys

from testbed.lab.engine.engine import main

sys.exit(main(sys.argv[1:]))
