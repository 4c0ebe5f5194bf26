"""The trainer formats prep ships for ``prep export``. Each registers itself under the
``prep.exporters`` entry point in pyproject.toml; the framework finds them only there
(:mod:`pipeline.export`)."""
