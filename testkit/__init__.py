"""What the tests and the benchmarks share: real processes and servers on loopback, WeCom's callbacks,
the settings of a test service, a fake clock, and the in-memory store. Never shipped with the service."""
