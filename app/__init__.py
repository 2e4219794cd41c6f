"""revcov: which share of a B2B company's revenue gave NPS feedback, and how much is at risk."""

__version__ = "0.1.0"
