"""Evaluation: the tag classifier yardstick, FAD, and model reports."""
