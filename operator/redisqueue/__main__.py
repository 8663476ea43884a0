"""``python -m redisqueue``: the ``redisqueue`` command."""

import sys

from redisqueue.controller.cli import main

sys.exit(main())
