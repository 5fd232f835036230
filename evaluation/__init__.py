"""Grading: per-call metrics and run aggregates from CallRecords (no aiortc, no Ray)."""
