"""A real CAS server for the tests: django-cas-server, run by Django on loopback with a SQLite database
in the test's directory (tests/cas/test_real_cas.py starts it)."""
