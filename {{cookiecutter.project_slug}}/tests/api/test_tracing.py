"""Tests of tracing (placeholder)."""
