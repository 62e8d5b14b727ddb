"""Paper tables and figures from the per-category metrics."""
