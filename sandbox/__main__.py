"""`python -m sandbox` (or `wecom-bind-demo`): the demo, the service beside its WeCom, CAS and SMS emulators.

The service's own command (`wecom-bind demo`) forwards here without importing the emulators, which
are a distribution of their own and never ship with the service.
"""

from __future__ import annotations

import sys

from sandbox.demo import main

if __name__ == "__main__":
    sys.exit(main())
