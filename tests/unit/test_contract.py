"""The plugin contract, checked without launching anything: every stage has a documented hook,
the generated reference covers every hook, built-ins are declared as entry points, plans are
plain data."""

import os

from secrun import hookspecs
from secrun.stages import STAGE_NAMES, STAGES, hook_name
from support import REPO


def test_every_stage_has_a_documented_hookspec():
    for stage in STAGES:
        name, side, why = stage.name, stage.side, stage.why
        spec = getattr(hookspecs, hook_name(name), None)
        assert spec is not None, name
        assert spec.__doc__ and f"Stage ``{name}``" in spec.__doc__
        assert side in spec.__doc__ or ("supervisor" in spec.__doc__) == (side == "parent")
        assert len(why) > 40


def test_every_hookspec_is_documented_and_tested():
    docs = open(os.path.join(REPO, "docs", "hooks.md")).read()
    tests = "".join(open(os.path.join(d, f)).read()
                    for d, _, files in os.walk(os.path.join(REPO, "tests"))
                    for f in files if f.endswith(".py"))
    for name in dir(hookspecs):
        if name.startswith("secrun_"):
            assert f"### `{name}(" in docs, name
            # stage hooks are exercised by the marker plugin above; the rest by name
            stage = name[len("secrun_"):]
            assert stage in STAGE_NAMES or name in tests.replace("hookspecs", ""), name


def test_builtins_are_the_entry_points_of_secruns_distribution():
    import tomllib

    from secrun.registry import Plugins, builtin_entry_points

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        eps = tomllib.load(f)["project"]["entry-points"]["secrun.plugins"]
    assert builtin_entry_points() == dict(sorted(eps.items()))
    loaded = Plugins()
    builtin = [n for n, i in loaded.info.items() if i.builtin]
    assert builtin == list(builtin_entry_points())
    assert all(loaded.info[n].module.__name__ == eps[n] for n in builtin)


def test_every_hook_a_builtin_plugin_defines_is_registered():
    """A ``secrun_*`` function in a built-in plugin's modules that its entry point (the
    ``plugin`` module) does not export is never called: pluggy registers what that module
    holds."""
    import importlib

    from secrun.registry import builtin_entry_points

    for name, modname in builtin_entry_points().items():
        entry = importlib.import_module(modname)
        package = modname.rsplit(".", 1)[0]
        pkg_dir = os.path.dirname(importlib.import_module(package).__file__)
        for f in sorted(os.listdir(pkg_dir)):
            if not f.endswith(".py") or f == "plugin.py":
                continue
            mod = importlib.import_module(package if f == "__init__.py" else
                                          f"{package}.{f[:-3]}")
            for attr, value in vars(mod).items():
                if attr.startswith("secrun_") and attr in dir(hookspecs) and callable(value) \
                        and getattr(value, "__module__", None) == mod.__name__:
                    assert getattr(entry, attr, None) is value, (name, mod.__name__, attr)


def test_plans_are_plain_data():
    import marshal

    from secrun import plan

    for name in ("unconfined", "default", "strict"):
        p = plan.build([name])
        assert marshal.loads(marshal.dumps(p)) == p


def test_secrun_register_commands_adds_subcommands():
    import click

    from secrun.registry import Plugins

    group = click.Group("x")
    loaded = Plugins()
    for _plugin, fn in loaded.order("secrun_register_commands", list(loaded.info)):
        fn(cli=group)
    # the built-in seccomp and cgroups plugins add their own subcommand groups
    assert {"seccomp", "cgroups"} <= set(group.commands)
    assert all(isinstance(c, click.Command) for c in group.commands.values())


def test_bundled_profiles_are_package_resources():
    import importlib.resources

    files = importlib.resources.files("secrun.profiles")
    assert files.joinpath("strict.toml").is_file()
    assert files.joinpath("default.toml").read_text().strip()


def test_a_third_party_plugins_whole_package_invalidates_the_plan():
    """The plan cache watches every module of a third-party plugin's package, not only the
    entry point's module: a change to its planning module must rebuild the plan."""
    from secrun.registry import Plugins

    files = Plugins(["priority"]).files()
    names = {os.path.basename(f) for f in files if "/secrun_example/" in f}
    assert {"__init__.py", "plugin.py", "plan.py", "audit.py", "ioprio.py"} <= names
    assert any(f.endswith("secrun/stages.py") for f in files)  # the stage table: dispatch


# --- which plugin a subcommand word loads -------------------------------------------------------

def _fake_dist(site, name, plugins, commands):
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    text = "[secrun.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in plugins.items())
    text += "[secrun.commands]\n" + "".join(f"{k} = {v}\n" for k, v in commands.items())
    (info / "entry_points.txt").write_text(text)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")


def test_the_index_and_the_loader_take_the_first_entry_point_of_a_name(tmp_path, monkeypatch):
    """Two distributions, on two directories of the search path, declare the plugin `twin`:
    the index and the loader both take the first one's, and the index records its module."""
    import sys

    from secrun import commands, registry

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _fake_dist(first, "twin_a", {"twin": "twin_a_mod"}, {"twinword": "twin_a_mod"})
    _fake_dist(second, "twin_b", {"twin": "twin_b_mod"}, {"twinword": "twin_b_mod"})
    monkeypatch.setattr(sys, "path", [str(first), str(second)])
    found = commands.scan()
    assert found["twinword"][0] == "twin" and found["twinword"][-1] == "twin_a_mod", found
    assert registry._entry_points()["twin"].value == "twin_a_mod"


def test_a_subcommand_whose_plugin_is_another_module_than_indexed_is_refused(monkeypatch,
                                                                            capsys):
    """The index names the word's plugin and its module; when the plugin of that name the
    loader would import has another module, nothing of it is imported: one line, exit 125."""
    import sys

    from secrun import commands, main, registry

    ep = registry._entry_points()["marker"]
    monkeypatch.setattr(commands, "index", lambda: {
        "probeword-xyz": ("marker", "/nowhere/x.dist-info", "secrun_testplugin.not_marker")})
    monkeypatch.delitem(sys.modules, ep.value, raising=False)
    rc = main.main(["probeword-xyz"])
    err = capsys.readouterr().err
    assert rc == 125 and len(err.splitlines()) == 1, err
    assert "marker" in err and "secrun_testplugin.not_marker" in err and ep.value in err, err
    assert ep.value not in sys.modules, "the plugin was imported before the check"
