"""tether's laptop side: the CLI, the job spec, transports, sync, the local job registry."""

__version__ = "0.1.0"
