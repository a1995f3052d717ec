"""Runtimes turn a trust policy plus a host's current files into a plan. Pure functions, no I/O."""
