"""``python -m testbed.media.traffic sink|source ...``: one cross-traffic process (see ``cli``)."""

import sys

from testbed.media.traffic.cli import main

sys.exit(main())
