"""aitrail: the flight recorder for AI-influenced changes."""

__version__ = "0.1.0"
