import os
import tempfile

# Proof caches go to a per-run temporary directory: tests never read a stale cache.
os.environ.setdefault("GRADAUDIT_CACHE", tempfile.mkdtemp(prefix="gradaudit-test-cache-"))
