"""The flotilla command-line interface."""
