"""pytest plugin: collect the framework-free tests without importing Odoo.

The repository root is an Odoo addon, so it and ``tests/`` carry an
``__init__.py`` that imports ``odoo``. pytest treats such folders as packages
and imports their ``__init__.py`` while collecting, which would make the
pure-Python suite depend on Odoo. Collecting those folders as plain
directories keeps ``tests/pure`` runnable on any machine.
"""

import pytest


def pytest_collect_directory(path, parent):
    if (path / "__init__.py").is_file():
        return pytest.Dir.from_parent(parent, path=path)
    return None
