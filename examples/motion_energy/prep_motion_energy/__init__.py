"""prep-motion-energy: an example prep plug-in written against prep's public contract only.

``stage`` measures each clip's per-frame motion (entry point ``prep.stages``), ``checks`` and
``report`` are its ``prep doctor`` and ``prep report`` hooks, ``exporter`` writes it as CSV
(entry point ``prep.exporters``).
"""
