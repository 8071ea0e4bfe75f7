"""flotilla core: pure functions and models, no I/O."""
