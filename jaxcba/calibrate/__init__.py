"""Calibration of the eight parameters from a labelled image (paper Section 3.2)."""
