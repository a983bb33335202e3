"""Thin route handlers: each checks its input, calls the library or the cache, shapes the answer."""
