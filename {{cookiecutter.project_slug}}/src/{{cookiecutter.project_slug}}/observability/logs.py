"""Logging (placeholder)."""
