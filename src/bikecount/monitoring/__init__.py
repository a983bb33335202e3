"""Monitoring: Prometheus metrics (metrics.py) and data drift (drift.py)."""
