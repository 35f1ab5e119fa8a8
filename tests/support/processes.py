"""Starting and stopping real `wecom-bind` processes: shared with the benchmarks (testkit.processes)."""

from testkit.processes import all_output, free_port, run_command, start_service, stop, wait_healthy

__all__ = ["all_output", "free_port", "run_command", "start_service", "stop", "wait_healthy"]
