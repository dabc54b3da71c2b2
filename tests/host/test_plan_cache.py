"""The plan cache never serves another policy than the profile's (``core/plan.py``).

Every case launches the real ``secrun`` with a private ``XDG_CACHE_HOME`` and observes the
policy from inside the sandbox (``id -u``, the network interfaces in ``/proc/net/dev``): an
in-place rewrite of a profile with its size and mtime kept (``touch -r``) is not served stale;
a FIFO, a symlink or a directory at the plan path, garbage, a truncated file, a structurally
wrong entry and a bit flipped anywhere in a cached plan are cache misses (a clean rebuild),
never a hang, a traceback or a different uid.

The helpers read and write the cache file through ``secrun.plan``'s own ``_seal``/``_unseal``
when it has them, and as the bare marshal stream of the earlier format otherwise, so the same
cases also run (and fail) against the code before the integrity check.
"""

import marshal
import os
import random
import stat
import subprocess

import pytest

from secrun import plan as P
from support import SECRUN

NOBODY = "65534\n"
TIMEOUT = 30  # a launch takes well under a second; a hang on the cache file must fail the test


@pytest.fixture
def cache(tmp_path):
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    return d


def launch(cache, cwd, *args, timeout=TIMEOUT):
    """secrun ARGS with the private cache, from ``cwd`` (part of the cache key)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    return subprocess.run([SECRUN, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def plan_files(cache):
    d = cache / "secrun" / "plans"
    return sorted(p for p in d.iterdir() if p.name.endswith(".plan")) if d.exists() else []


def the_plan_file(cache):
    files = plan_files(cache)
    assert len(files) == 1, files
    return files[0]


def seal(payload: bytes) -> bytes:
    return P._seal(payload) if hasattr(P, "_seal") else payload


def unseal(data: bytes):
    """(payload, offset of the payload in the file) of a valid cache file."""
    if hasattr(P, "_unseal"):
        payload = P._unseal(data)
        assert payload is not None, "the cache file secrun wrote does not verify"
        return payload, len(data) - len(payload)
    return data, 0


def write_file(path, data: bytes):
    """Replace the cache file with ``data`` (a regular file, 0600, as secrun writes them)."""
    tmp = path.with_name(path.name + ".test")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def rebuilt(path, key) -> bool:
    """The cache file is a valid entry for ``key`` again (written by the launch that missed).
    Not ``load_cached``: that also checks the dependencies, which the other work going on in
    a shared checkout may touch at any moment."""
    try:
        data = path.read_bytes()
        payload = P._unseal(data) if hasattr(P, "_unseal") else data
        entry = marshal.loads(payload) if payload is not None else None
    except (OSError, ValueError, EOFError, TypeError):
        return False
    return isinstance(entry, dict) and entry.get("key") == key \
        and isinstance(entry.get("plan"), dict) and "dispatch" in entry["plan"]


def assert_real_policy(r, expect=NOBODY):
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    assert r.stdout == expect, (r.stdout, r.stderr)


@pytest.fixture
def strict_cached(cache, tmp_path, monkeypatch):
    """A cached plan of ``-p strict`` run from tmp_path: (file, bytes, key, plan)."""
    r = launch(cache, tmp_path, "-p", "strict", "--", "id", "-u")
    assert_real_policy(r)
    path = the_plan_file(cache)
    data = path.read_bytes()
    payload, _ = unseal(data)
    entry = marshal.loads(payload)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert P.load_cached(entry["key"]) == entry["plan"], "secrun's own entry must verify"
    return path, data, entry["key"], entry["plan"]


# --- item 6: an in-place rewrite with the size and the mtime kept ------------------------------

def has_host_interfaces(out: str) -> bool:
    names = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
    return any(n != "lo" for n in names)


SWITCHES = {
    # the profile text before/after (same size), the command, what it shows for each
    "identity": ('extends = ["strict"]\n[identity]\nuid = 65534\n',
                 'extends = ["strict"]\n[identity]\nuid = 12345\n',
                 ["id", "-u"], lambda out: out.strip()),
    "net": ('extends = ["strict"]\n[namespaces]\nnet = "host"\n',
            'extends = ["strict"]\n[namespaces]\nnet = "none"\n',
            ["cat", "/proc/net/dev"], has_host_interfaces),
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_same_size_rewrite_with_mtime_restored_is_not_served_stale(switch, cache, tmp_path):
    before, after, cmd, observe = SWITCHES[switch]
    assert len(before) == len(after)
    prof = tmp_path / "p.toml"
    prof.write_text(before)
    prof.chmod(0o644)
    first = launch(cache, tmp_path, "-p", prof, "--", *cmd)
    assert first.returncode == 0, first.stderr
    old_view = observe(first.stdout)
    again = launch(cache, tmp_path, "-p", prof, "--", *cmd)
    assert again.returncode == 0 and observe(again.stdout) == old_view, again.stderr
    assert plan_files(cache), "the plan should be cached now"
    st = os.stat(prof)
    with open(prof, "r+b") as f:  # in place: same inode, same size
        f.write(after.encode())
    os.utime(prof, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `touch -r` does
    st2 = os.stat(prof)
    assert (st2.st_ino, st2.st_dev, st2.st_size, st2.st_mtime_ns) == \
        (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
    r = launch(cache, tmp_path, "-p", prof, "--", *cmd)
    assert r.returncode == 0, r.stderr
    fresh = launch(cache, tmp_path, "--no-cache", "-p", prof, "--", *cmd)
    assert fresh.returncode == 0, fresh.stderr
    assert observe(fresh.stdout) != old_view, "the two profiles should differ in effect"
    assert observe(r.stdout) == observe(fresh.stdout), \
        f"stale plan: the launch applied the old profile ({switch})"


# --- item 6: what is at the plan path --------------------------------------------------------

def make_fifo(path):
    os.mkfifo(path, 0o600)


def make_symlink_to_fifo(path):
    fifo = path.with_name("elsewhere.fifo")
    os.mkfifo(fifo, 0o600)
    os.symlink(fifo, path)


def make_symlink_to_plan(path):
    real = path.with_name("real.bin")
    os.replace(path, real)
    os.symlink(real, path)


def make_directory(path):
    os.mkdir(path, 0o700)


def make_group_writable(path):
    os.chmod(path, 0o620)


@pytest.mark.parametrize("make", [make_fifo, make_symlink_to_fifo, make_symlink_to_plan,
                                  make_directory, make_group_writable],
                         ids=lambda f: f.__name__[len("make_"):])
def test_not_a_private_regular_file_at_the_plan_path_is_a_miss(make, strict_cached, cache,
                                                               tmp_path):
    path, _data, _key, _plan = strict_cached
    if make is not make_symlink_to_plan and make is not make_group_writable:
        path.unlink()
    make(path)
    try:
        r = launch(cache, tmp_path, "-p", "strict", "--", "id", "-u")
    except subprocess.TimeoutExpired:
        pytest.fail(f"secrun hung on a {make.__name__[5:]} at the plan path")
    assert_real_policy(r)
    r = launch(cache, tmp_path, "-p", "strict", "--", "id", "-u")  # and once more
    assert_real_policy(r)


# --- item 6: what is in the plan file --------------------------------------------------------

def garbage_cases(data, key, plan):
    payload, off = unseal(data)
    header = data[:off]
    rnd = random.Random(6)
    cases = {
        "empty": b"",
        "random": bytes(rnd.getrandbits(8) for _ in range(4096)),
        "random, plan-sized": bytes(rnd.getrandbits(8) for _ in range(len(data))),
        "header only": header,
        "truncated to 1 byte": data[:1],
        "truncated in the header": data[:max(1, off // 2)],
        "truncated to half": data[:len(data) // 2],
        "truncated by one byte": data[:-1],
        "one byte appended": data + b"\0",
        "a null byte for the type": data[:off] + b"\0" + data[off + 1:],
        "payload of another entry": header + marshal.dumps({"key": key, "plan": {}}),
    }
    wrong = {
        "a list": [key, plan],
        "no plan": {"key": key},
        "plan is a string": {"key": key, "plan": "strict"},
        "plan is None": {"key": key, "plan": None},
        "plan without dispatch": {"key": key,
                                  "plan": {k: v for k, v in plan.items() if k != "dispatch"}},
        "plan without deps": {"key": key,
                              "plan": {k: v for k, v in plan.items() if k != "deps"}},
        "deps not a list": {"key": key, "plan": dict(plan, deps=7)},
        "a dep not a pair": {"key": key, "plan": dict(plan, deps=[("/etc/passwd",)])},
        "dispatch rows not tuples": {"key": key, "plan": dict(plan, dispatch={
            "prepare": ["secrun.plugins.cgroups"]})},
        "config a list": {"key": key, "plan": dict(plan, config=[])},
        "config section not a dict": {"key": key, "plan": dict(
            plan, config=dict(plan["config"], identity=65534))},
        "plan sections a list": {"key": key, "plan": dict(plan, plan=[])},
        "another version": {"key": key, "plan": dict(plan, version="0.0.0")},
        "an int key": {"key": 0, "plan": plan},
    }
    for name, entry in wrong.items():
        cases["structurally wrong: " + name] = seal(marshal.dumps(entry))
    return cases


def test_garbage_truncated_and_structurally_wrong_plans_are_misses(strict_cached, cache,
                                                                   tmp_path):
    path, data, key, plan = strict_cached
    failures = []
    for name, content in garbage_cases(data, key, plan).items():
        write_file(path, content)
        r = launch(cache, tmp_path, "-p", "strict", "--", "id", "-u")
        if "Traceback" in r.stderr or r.returncode != 0 or r.stdout != NOBODY:
            failures.append(f"{name}: rc={r.returncode} out={r.stdout!r} "
                            f"err={r.stderr.strip()[-300:]!r}")
            continue
        if not rebuilt(path, key):
            failures.append(f"{name}: not rebuilt")
    assert not failures, "\n".join(failures)


def identity_windows(payload):
    """The bytes after each marshalled "identity" key (the [identity] config and plan
    sections: the uid, gid and the references to them)."""
    out = []
    start = 0
    while True:
        i = payload.find(b"identity", start)
        if i < 0:
            return out
        out.append(range(i + len(b"identity"), min(len(payload), i + len(b"identity") + 48)))
        start = i + 1


def flip(data, bit):
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_every_bit_flip_is_a_miss_in_process(strict_cached, monkeypatch):
    """Every bit of the header, every bit around the [identity] values, and 3000 random bits
    elsewhere: the loader returns the plan secrun built or nothing, never another one and
    never an exception."""
    path, data, key, plan = strict_cached
    payload, off = unseal(data)
    windows = identity_windows(payload)
    assert len(windows) >= 2, "the strict plan should carry [identity] in config and plan"
    bits = set(range(min(len(data), off + 16) * 8))
    for w in windows:
        bits.update(range((off + w.start) * 8, (off + w.stop) * 8))
    rnd = random.Random(1)
    bits.update(rnd.randrange(len(data) * 8) for _ in range(3000))
    monkeypatch.setenv("XDG_CACHE_HOME", str(path.parent.parent.parent))
    other = []
    for bit in sorted(bits):
        write_file(path, flip(data, bit))
        try:
            got = P.load_cached(key)
        except Exception as e:
            other.append(f"bit {bit}: {type(e).__name__}: {e}")
            continue
        if got is not None and got != plan:
            ident = got.get("plan", {}).get("identity") if isinstance(got, dict) else None
            other.append(f"bit {bit}: a different plan (identity {ident})")
    assert not other, f"{len(other)} of {len(bits)} flips: " + "; ".join(other[:10])


def test_bit_flips_never_change_the_policy_of_a_launch(strict_cached, cache, tmp_path):
    """Real launches of ``-p strict`` on a cached plan with one bit flipped: 40 bits around
    the [identity] values and 8 anywhere.  Each prints 65534 and rebuilds the entry."""
    path, data, key, plan = strict_cached
    payload, off = unseal(data)
    window_bits = [b for w in identity_windows(payload)
                   for b in range((off + w.start) * 8, (off + w.stop) * 8)]
    rnd = random.Random(9)
    bits = rnd.sample(window_bits, 40) + [rnd.randrange(len(data) * 8) for _ in range(8)]
    failures = []
    for bit in bits:
        write_file(path, flip(data, bit))
        r = launch(cache, tmp_path, "-p", "strict", "--", "id", "-u")
        if "Traceback" in r.stderr or r.returncode != 0 or r.stdout != NOBODY:
            failures.append(f"bit {bit}: rc={r.returncode} out={r.stdout!r} "
                            f"err={r.stderr.strip()[-200:]!r}")
            continue
        if not rebuilt(path, key):
            failures.append(f"bit {bit}: not rebuilt")
    assert not failures, f"{len(failures)} of {len(bits)}:\n" + "\n".join(failures)


# --- what the loader needs from the file ------------------------------------------------------

def test_the_cache_file_is_a_private_regular_file_with_a_digest(strict_cached):
    path, data, _key, _plan = strict_cached
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert data.startswith(P.MAGIC)
    assert P._unseal(data) is not None and P._unseal(flip(data, len(data) * 8 - 1)) is None


def test_a_profile_changed_during_the_build_is_not_stored(cache, tmp_path, monkeypatch):
    """A dependency whose ctime is not older than the build's start may have changed after it
    was read, so its identity may describe content the plan was not built from: the plan is
    used for this launch but not cached.  The next build, with nothing changed, is."""
    import time

    from secrun import compose as profiles

    prof = tmp_path / "p.toml"
    prof.write_text('[process]\numask = "011"\n')
    time.sleep(0.05)  # the write itself is well before the build
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.chdir(tmp_path)
    real_load_chain = profiles.load_chain

    def load_then_change(*a, **kw):
        chain = real_load_chain(*a, **kw)
        os.utime(prof)  # a change after the content was read, before the identities
        return chain

    monkeypatch.setattr(profiles, "load_chain", load_then_change)
    P.get([str(prof)])
    assert plan_files(cache) == []
    monkeypatch.setattr(profiles, "load_chain", real_load_chain)
    time.sleep(0.05)
    P.get([str(prof)])
    assert len(plan_files(cache)) == 1


# --- where the cache directory is: every component trusted, or no cache ------------------------
# Root run with a caller's environment (sudo -E) takes XDG_CACHE_HOME from the caller: the plan
# cache and the subcommand index are used only when every directory on the way (as given and
# as resolved) is root's or the caller's own and writable by no one else; otherwise no cache
# at all (a miss), never a write through someone else's directory.

def _tree(root):
    """{relative path: (mode, uid, size)} of everything under ``root`` (not following links)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_size)
    return out


@pytest.fixture
def scratch():
    """Directories in the host's /tmp (a sticky, world-writable ancestor, as a real one is),
    removed after the test."""
    import shutil
    import tempfile

    made = []

    def make(owner=0, mode=0o755):
        d = tempfile.mkdtemp(prefix="secrun-cachedir-", dir="/tmp")
        os.chmod(d, mode)
        os.chown(d, owner, owner)
        made.append(d)
        return d

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def _launches_run(cache_home, cwd):
    """A bare-word launch (looks up the subcommand index) and an option-first one, as root."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    for args in (["true"], ["-p", "strict", "--", "id", "-u"]):
        r = subprocess.run([SECRUN, *args], capture_output=True, text=True, env=env, cwd=cwd,
                           timeout=TIMEOUT)
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 0, (args, r.stderr)


def _symlink_attack(scratch):
    """A user's directory with `secrun` -> a root-owned directory (the user's own link)."""
    att, victim = scratch(owner=65534), scratch()
    os.symlink(victim, os.path.join(att, "secrun"))
    os.lchown(os.path.join(att, "secrun"), 65534, 65534)
    return att, victim


def _users_directory(scratch):
    """XDG_CACHE_HOME is a directory another user owns (no link at all)."""
    att = scratch(owner=65534)
    return att, att


def _roots_link_into_a_users_directory(scratch):
    """A root-owned link on the way, to a directory another user owns."""
    home, att = scratch(), scratch(owner=65534)
    os.symlink(att, os.path.join(home, "secrun"))
    return home, att


def _group_writable_ancestor(scratch):
    """A root-owned directory on the way that its group may write."""
    top = scratch(mode=0o775)
    inner = os.path.join(top, "cache")
    os.mkdir(inner, 0o700)
    return inner, top


def _world_writable_sticky_leaf(scratch):
    """The plans directory itself is sticky and world-writable like /tmp: fine above a
    directory of ours, not as the directory the cache files are in."""
    home = scratch()
    os.makedirs(os.path.join(home, "secrun", "plans"))
    os.chmod(os.path.join(home, "secrun", "plans"), 0o1777)
    return home, os.path.join(home, "secrun", "plans")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a directory owned by nobody)")
@pytest.mark.parametrize("make", [_symlink_attack, _users_directory,
                                  _roots_link_into_a_users_directory, _group_writable_ancestor,
                                  _world_writable_sticky_leaf],
                         ids=lambda f: f.__name__.strip("_"))
def test_root_never_writes_into_a_cache_directory_others_control(make, scratch, tmp_path):
    cache_home, watched = make(scratch)
    before = _tree(watched)
    st = os.stat(watched)
    _launches_run(cache_home, tmp_path)
    assert _tree(watched) == before, f"secrun wrote under {watched}"
    assert os.stat(watched).st_mtime_ns == st.st_mtime_ns


def test_a_cache_below_the_sticky_tmp_and_a_roots_own_link_is_used(scratch, tmp_path):
    """/tmp (sticky, world-writable) as an ancestor and a link owned by root to a directory of
    root's: the cache is made (0700) and hit."""
    real = scratch(mode=0o700)
    via = scratch()
    link = os.path.join(via, "home")
    os.symlink(real, link)
    env = dict(os.environ, XDG_CACHE_HOME=link)
    for _ in range(2):
        r = subprocess.run([SECRUN, "true"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
    plans = os.path.join(real, "secrun", "plans")
    assert stat.S_IMODE(os.stat(plans).st_mode) == 0o700
    assert [f for f in os.listdir(plans) if f.endswith(".plan")]
    assert os.path.isfile(os.path.join(real, "secrun", "commands"))
    assert P._trusted_dir(plans) and P._trusted_dir(os.path.join(link, "secrun", "plans"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a directory owned by nobody)")
def test_trusted_dir_in_process(scratch):
    """The rule itself: owner root or the euid on every component, no group/other write
    (a sticky one only above a directory of ours), links only root's or ours; missing
    directories are made 0700 only under a trusted parent."""
    mine = scratch(mode=0o700)
    assert P._trusted_dir(mine)
    assert not P._trusted_dir(os.path.join(mine, "missing"))
    made = os.path.join(mine, "a", "b")
    assert P._trusted_dir(made, create=True)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    theirs = scratch(owner=65534)
    assert not P._trusted_dir(theirs)
    assert not P._trusted_dir(os.path.join(theirs, "x"), create=True)
    assert os.listdir(theirs) == []
    os.symlink(mine, os.path.join(theirs, "link"))
    os.lchown(os.path.join(theirs, "link"), 65534, 65534)
    assert not P._trusted_dir(os.path.join(theirs, "link"))
    rootlink = os.path.join(scratch(), "link")
    os.symlink(os.path.join(theirs, "link"), rootlink)
    assert not P._trusted_dir(rootlink), "a root's link to a user's link"
    # (what this process found trusted stays so: only root or the euid could change it)
    os.chmod(mine, 0o770)
    P._TRUSTED_ANCESTORS.clear()
    assert not P._trusted_dir(made), "a group-writable ancestor"
    os.chmod(mine, 0o1777)
    P._TRUSTED_ANCESTORS.clear()
    assert P._trusted_dir(made), "a sticky world-writable ancestor above a directory of ours"
    assert not P._trusted_dir(mine), "... but not as the directory itself"
    assert not P._trusted_dir("relative/dir") and not P._trusted_dir("/tmp/../tmp")


def test_a_cached_strict_launch_imports_only_what_it_runs(cache, tmp_path):
    """What a launch from the cache imports, with the launcher's own interpreter options:
    never the planning libraries, and never ``ctypes`` itself (secrun.kernel takes libc from
    ``_ctypes``: ``import ctypes`` is ~2.5 ms of every launch), ``struct`` or ``typing``."""
    assert launch(cache, tmp_path, "-p", "strict", "--", "true").returncode == 0  # caches
    with open(SECRUN) as f:
        interpreter = f.readline().split()[-2]  # #!/usr/bin/env -S ... PYTHON -IS
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    r = subprocess.run([interpreter, "-IS", "-X", "importtime", SECRUN, "-p", "strict", "--",
                        "true"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    mods = {s.split("|")[-1].strip() for s in r.stderr.splitlines()
            if s.startswith("import time:")}
    assert "secrun.plugins.seccomp" in mods and "_ctypes" in mods, r.stderr  # (it did run)
    for heavy in ("ctypes", "struct", "typing", "pluggy", "click", "pyseccomp", "secrun.compose",
                  "secrun.registry", "tomllib", "json"):
        assert heavy not in mods, heavy


def test_the_key_holds_the_namespace_kinds_this_process_sees(monkeypatch):
    """A plan made where /proc/self/ns lacked a kind (a doctored /proc: the namespaces plugin
    then plans without that namespace) is not taken where the kernel's /proc shows it."""
    real = P.cache_key(["strict"], [], [])
    assert "'time'" in real or "'pid'" in real
    monkeypatch.setattr(P, "_ns_kinds", lambda: ("ipc", "mnt", "net", "pid", "user", "uts"))
    assert P.cache_key(["strict"], [], []) != real
