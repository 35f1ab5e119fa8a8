"""`python -m callback_service` is the `wecom-bind` command."""

import sys

from callback_service.ops.cli import main

sys.exit(main())
