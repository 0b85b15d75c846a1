"""Repository-wide pytest setup.

The testbed's own plugin (options, fixtures, splat checks) is registered by
the package's pytest11 entry point, so it also serves projects that install
prism-testbed. Here: pytester, for cases that run pytest inside pytest.
"""

pytest_plugins = ["pytester"]
