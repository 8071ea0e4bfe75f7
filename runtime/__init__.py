"""Wiring: turns the settings into the real Temporal client, secret and content stores and
tool paths that the worker, the CLI and the agent hand to workflows and activities."""
