"""The web layer: the app factory, its typed keys, middlewares, /health and /ready, and the pages."""
