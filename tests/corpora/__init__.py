"""Test-only writers of corpora in their official layouts (synthetic frames, real file names)."""
