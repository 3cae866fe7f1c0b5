import jax

# Reference comparisons (scipy, finite differences) need float64; the library itself never
# flips this switch (see jaxcba/__init__.py).
jax.config.update("jax_enable_x64", True)

import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    The whole suite in one process compiles thousands of XLA programs; kept alive, their code
    mappings reach the kernel's per-process map limit (vm.max_map_count, 65530 by default)
    and the next compilation crashes with a segmentation fault, late in the run.
    """
    yield
    jax.clear_caches()
