"""Local emulators of WeCom and of the CAS server, for the tests and the demo only."""
