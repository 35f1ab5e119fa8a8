"""The typed AppKeys of the WeCom emulator, read by its views and by tests and the demo."""

from __future__ import annotations

from typing import Final

import jinja2
from aiohttp import web

from sandbox.wecom_push import Pusher
from sandbox.wecom_state import FaultSwitch, WeComSandboxState

WECOM_SANDBOX_STATE: Final = web.AppKey("wecom_sandbox_state", WeComSandboxState)
"""The emulated organisation: members, follows, messages, invites, pushes, calls."""
WECOM_SANDBOX_FAULTS: Final = web.AppKey("wecom_sandbox_faults", FaultSwitch)
"""The fault switch of the /cgi-bin API (the same object as the state's `faults`)."""
WECOM_SANDBOX_PUSHER: Final = web.AppKey("wecom_sandbox_pusher", Pusher)
"""The callback pusher; `await app[WECOM_SANDBOX_PUSHER].drain()` waits for pushes in flight."""
WECOM_SANDBOX_ADMISSION: Final[web.AppKey[str | None]] = web.AppKey("wecom_sandbox_admission")
# Where the verification screen's 常见问题 link leads (the service's /help), if anywhere.
WECOM_SANDBOX_HELP: Final[web.AppKey[str | None]] = web.AppKey("wecom_sandbox_help")
"""The service's 二次验证 admission page, or None when second verification is off."""
TEMPLATES: Final = web.AppKey("wecom_sandbox_templates", jinja2.Environment)
