import jax

# Reference comparisons (scipy, finite differences) need float64; the library itself never
# flips this switch (see jaxcba/__init__.py).
jax.config.update("jax_enable_x64", True)
