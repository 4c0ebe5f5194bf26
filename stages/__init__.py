"""The stages prep ships. Each registers itself under the ``prep.stages`` entry point in
pyproject.toml; the framework finds them only there (:mod:`pipeline.registry`)."""
