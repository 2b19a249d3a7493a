"""Tests of /metrics (placeholder)."""
