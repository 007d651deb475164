"""The Ray backend's node-local staging folders live in the machine's shared temporary folder, where another local
user may have made the folder first (a symbolic link to somewhere of theirs, or a folder they own or may write to):
the staging functions write and delete only under a root of this user's own, checked on every use, never through
someone else's. Unit tests of the staging functions (no Ray cluster needed); the trials that use them are in
test_ray.py and test_ray_cluster.py."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

import pytest

from tunesmith.executors._ray_actor import _remove_staging
from tunesmith.executors._ray_transfer import make_staging, remove_staging_parents, staging_dir

NODE = "ab" * 16
TRIAL = "/home/me/results/exp/trials/trial_00001"


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    """A shared temporary folder of the test's own (TMPDIR, as Ray's workers read it through tempfile)."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert tempfile.gettempdir() == str(shared)
    return shared


def _root(tmp, stage: str) -> str:
    """The staging root: the folder directly under the temporary folder that holds the staging folder."""
    return os.path.join(tmp, os.path.relpath(stage, tmp).split(os.sep)[0])


def _plant_link(tmp, victim) -> None:
    """Another user's link in the root's place, to a folder of theirs (both the old shared name and ours)."""
    for name in ("tunesmith-ray", f"tunesmith-ray-{os.getuid()}"):
        os.symlink(victim, os.path.join(tmp, name))


def test_the_staging_root_is_made_private_to_this_user(tmp):
    stage = staging_dir(NODE, TRIAL)
    make_staging(stage)
    root = _root(tmp, stage)
    st = os.lstat(root)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert os.path.basename(root) == f"tunesmith-ray-{os.getuid()}"  # one per user: never another user's
    assert os.path.isdir(stage)
    make_staging(stage)  # the next trial on the node finds it and uses it


def test_a_link_planted_in_the_roots_place_is_refused_not_followed(tmp, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    _plant_link(tmp, victim)
    stage = staging_dir(NODE, TRIAL)
    with pytest.raises(PermissionError) as e:
        make_staging(stage)
    root = _root(tmp, stage)
    assert root in str(e.value) and "symbolic link" in str(e.value) and "remove it" in str(e.value)
    assert os.listdir(victim) == []  # nothing written through the link


@pytest.mark.parametrize("why", ["writable by others", "owned by another user"])
def test_a_root_someone_else_may_write_to_is_refused(tmp, why):
    if why == "owned by another user" and os.getuid() != 0:
        pytest.skip("making a folder of another user's needs root")
    for name in ("tunesmith-ray", f"tunesmith-ray-{os.getuid()}"):
        planted = os.path.join(tmp, name)
        os.mkdir(planted)
        if why == "writable by others":
            os.chmod(planted, 0o777)
        else:
            os.chmod(planted, 0o700)
            os.chown(planted, 4242, 4242)
    stage = staging_dir(NODE, TRIAL)
    with pytest.raises(PermissionError) as e:
        make_staging(stage)
    assert _root(tmp, stage) in str(e.value) and why in str(e.value)
    assert not os.path.exists(stage)


def test_removing_a_staging_folder_deletes_nothing_through_a_planted_root(tmp, tmp_path):
    # The victim's folder holds what looks like a trial's staged files at the staging folder's place: a trial's end
    # (or the driver's shutdown) removing its staging folder must not delete them through the link.
    stage = staging_dir(NODE, TRIAL)
    victim = tmp_path / "victim"
    inner = victim / os.path.relpath(stage, _root(tmp, stage))
    (inner / "checkpoints" / "checkpoint_000001").mkdir(parents=True)
    (inner / "checkpoints" / "checkpoint_000001" / "model.pt").write_text("precious")
    (inner / ".tunesmith-restore").mkdir()
    (inner / "output.log").write_text("precious")
    empty = victim / "empty"  # an empty folder of theirs above where the parents are removed
    empty.mkdir()
    _plant_link(tmp, victim)
    _remove_staging(stage)
    remove_staging_parents(os.path.join(_root(tmp, stage), "empty", "x"))
    assert (inner / "checkpoints" / "checkpoint_000001" / "model.pt").read_text() == "precious"
    assert (inner / ".tunesmith-restore").is_dir() and (inner / "output.log").read_text() == "precious"
    assert empty.is_dir()


def test_removing_a_staging_folder_deletes_nothing_through_a_planted_link_below_the_root(tmp, tmp_path):
    # A link in the place of a folder below the root (the node's): the staged files are removed by their path, so a
    # link on the way is never followed.
    stage = staging_dir(NODE, TRIAL)
    make_staging(stage)
    root = _root(tmp, stage)
    node = os.path.join(root, os.path.relpath(stage, root).split(os.sep)[0])
    victim = tmp_path / "victim"
    inner = victim / os.path.relpath(stage, node)
    (inner / "checkpoints").mkdir(parents=True)
    (inner / "checkpoints" / "model.pt").write_text("precious")
    shutil.rmtree(node)
    os.symlink(victim, node)
    _remove_staging(stage)
    assert (inner / "checkpoints" / "model.pt").read_text() == "precious"


def test_a_staging_folder_and_its_empty_parents_go_but_the_private_root_stays(tmp):
    stage = staging_dir(NODE, TRIAL)
    make_staging(stage)
    os.makedirs(os.path.join(stage, "checkpoints", "checkpoint_000001"))
    _remove_staging(stage)
    root = _root(tmp, stage)
    assert os.listdir(root) == []  # the node's, the experiment's and trials/ went with it
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700
