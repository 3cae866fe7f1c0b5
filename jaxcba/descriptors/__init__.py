"""Morphological descriptors of labelled volumes (paper Sections 3.2-3.3)."""
