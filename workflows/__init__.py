"""Temporal workflow definitions: deterministic and thin; they call the core and activities."""
