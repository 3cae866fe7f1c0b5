import os

# Test volumes are tiny (mostly <= 64^3), so XLA's compile time is most of the suite's run time.
# Compile with LLVM's optimisation off, here and in every subprocess the tests start (they inherit
# the environment; tests/helpers.host_devices_env keeps these flags). Measured on 2 CPU cores:
# calibrate on a 32^3 volume -32 % CPU time with the same fitted digits; test_transport +
# test_pore_size + test_soft -31 % (experiments/benchmarks/RESULTS.md, "Test suite"). Set before
# JAX creates its CPU client, which reads XLA_FLAGS once. Benchmarks run with XLA's defaults.
# JAXCBA_TEST_XLA_DEFAULTS=1 keeps XLA's defaults (experiments/benchmarks/bench_test_suite.py).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("JAXCBA_TEST_XLA_DEFAULTS") != "1":
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import jax  # noqa: E402

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
