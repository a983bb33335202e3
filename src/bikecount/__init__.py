"""bikecount: predict hourly bicycle traffic at Paris bike counters."""

__version__ = "0.1.0"
