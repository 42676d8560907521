"""Runnable examples; each one is exercised by tests/docs/test_examples.py."""
