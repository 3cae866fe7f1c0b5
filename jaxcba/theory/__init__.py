"""Closed-form theory of the CBA model (paper Eqs. 10-25): jittable and differentiable."""
