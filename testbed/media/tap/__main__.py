"""``python -m testbed.media.tap``: run a tap (see :mod:`testbed.media.tap.capture`)."""

import sys

from testbed.media.tap.capture import main

sys.exit(main())
