"""diffad: reproduce and compare diffusion-based industrial anomaly detection."""

__version__ = "0.1.0"
