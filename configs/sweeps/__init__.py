"""Sweep configs: search spaces over the default recipe."""
