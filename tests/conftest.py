"""Shared fixtures.  Helpers live in ``support.py`` (importable: tests/ is on pythonpath).

The plan cache of a test run lives in a private temporary directory.
"""

import os
import textwrap

import pytest

from support import NOBODY_SKIP, nobody_can_run_secrun, run_secrun


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("secrun-cache")
    os.chmod(d, 0o700)
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(d)
    yield d
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def secrun():
    """``secrun(*args, ...)`` -> Result(rc, out, err); see ``support.run_secrun``."""
    return run_secrun


@pytest.fixture
def write_profile(tmp_path):
    """``write_profile(text, name="p")`` writes tmp_path/NAME.toml and returns its path."""

    def write(text: str, name: str = "p") -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(textwrap.dedent(text))
        path.chmod(0o644)
        return str(path)

    return write


def pytest_collection_modifyitems(config, items):
    """Tests parametrised with user="nobody" need an ordinary user able to start secrun."""
    rootless = [i for i in items
                if getattr(getattr(i, "callspec", None), "params", {}).get("user") == "nobody"]
    if rootless and os.geteuid() == 0 and not nobody_can_run_secrun():
        for item in rootless:
            item.add_marker(pytest.mark.skip(reason=NOBODY_SKIP))
