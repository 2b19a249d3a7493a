"""OpenTelemetry tracing (placeholder)."""
