"""Package of {{ cookiecutter.project_name }}."""
