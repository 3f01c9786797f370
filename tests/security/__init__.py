"""Attacks against real workers: each defence has a test that runs the attack."""
