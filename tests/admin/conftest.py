"""The pages' world (the service, the CAS and WeCom emulators, a real SQLite file), with a console."""

from __future__ import annotations

from tests.pages.conftest import MakeEnv, env, http, make_env

__all__ = ["MakeEnv", "env", "http", "make_env"]
