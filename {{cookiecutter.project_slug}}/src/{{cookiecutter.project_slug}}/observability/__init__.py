"""What the service tells the platform it runs on: logs (``logs``){% if cookiecutter.metrics == "yes" %}, Prometheus metrics
(``metrics``){% endif %}{% if cookiecutter.tracing == "otlp" %}, OpenTelemetry traces (``tracing``){% endif %}."""
