"""prep: offline data preparation for gloss-free sign language translation.

`pipeline` is the framework (decoding, manifests, runner, layout, CLI);
`stages` holds the content (one module or package per stage).
"""

__version__ = "0.1.0"
