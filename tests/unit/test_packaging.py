"""The design card's layout (core/ -> secrun, plugins/ -> secrun.plugins, profiles/ -> package
data) must survive every way of installing: the editable install the tests run on, a wheel, and
the type checker."""

import os
import subprocess
import sys
import zipfile

from support import REPO


def test_wheel_contains_the_mapped_packages_and_profiles(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(tmp_path), REPO],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("secrun-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("secrun/__init__.py", "secrun/launch.py", "secrun/stages.py",
                     "secrun/plugins/__init__.py", "secrun/plugins/process/__init__.py",
                     "secrun/plugins/process/plan.py", "secrun/plugins/process/plugin.py",
                     "secrun/profiles/strict.toml", "secrun/profiles/default.toml",
                     "secrun/profiles/unconfined.toml", "secrun/py.typed"):
        assert required in names, required
    assert not any(n.startswith(("core/", "plugins/", "tests/")) for n in names)
    meta = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "[console_scripts]\nsecrun = secrun.main:main" in text
    assert "[secrun.plugins]" in text and "process = secrun.plugins.process.plugin" in text


def test_editable_install_resolves_the_mapping():
    import secrun
    import secrun.plugins.process as process

    assert os.path.realpath(secrun.__file__) == os.path.join(REPO, "core", "__init__.py")
    assert os.path.realpath(process.__file__) == os.path.join(REPO, "plugins", "process",
                                                                 "__init__.py")


def test_type_checker_resolves_the_mapping():
    r = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout
