"""What the service tells the platform it runs on.

- ``logs``: one JSON or text line per record, with the request's id
{%- if cookiecutter.metrics == "yes" %}
- ``metrics``: Prometheus metrics on ``/metrics``
{%- endif %}
{%- if cookiecutter.tracing == "otlp" %}
- ``tracing``: OpenTelemetry traces of requests and their SQL
{%- endif %}
"""
