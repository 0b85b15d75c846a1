"""Repository-wide pytest setup.

The testbed's own plugin (options, fixtures, splat checks) is registered by
the package's pytest11 entry point, so it also serves projects that install
prism-testbed. Here: pytester, for cases that run pytest inside pytest.
"""

import pytest

from testbed.core.cache import cache_root

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def cache_home() -> str:
    """XDG_CACHE_HOME for a pytest session run inside this one, so it finds this session's cache.

    pytester gives the inner session a HOME of its own, where the cache is
    empty (it built a guest image of its own: 52 s a case). Session-scoped:
    read before any pytester fixture has moved HOME.
    """
    return str(cache_root().parent)
