"""The clients of the outside services: the WeCom API and the CAS server."""
