"""Effective conductivity, tortuosity and M-factor by an iterative solver (paper Eq. 27)."""
