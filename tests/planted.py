"""What a foreign job on the studio's Redis names in tests/test_redis_backend.py: the studio
must never import it (a test looks for this module in sys.modules)."""


def ran(*args, **kwargs):
    raise AssertionError("a foreign job's callback ran in the studio")
