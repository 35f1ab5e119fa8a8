"""wecom-bind's aiohttp service: the callback endpoint, the binding pages, the clients and the CLI."""
