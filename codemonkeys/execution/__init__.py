"""Running model-written tests on candidate patches: sandbox pools and the cached test runner."""

from .pool import SandboxPool
from .runner import ORIGINAL, TEST_FILE, TestRunner, patch_key, test_hash

__all__ = ["ORIGINAL", "TEST_FILE", "SandboxPool", "TestRunner", "patch_key", "test_hash"]
