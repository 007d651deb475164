from __future__ import annotations

import json
import os
import tempfile

import pytest

import tunesmith as ts
from tunesmith import checkpoint as ck


def test_from_state_round_trip_with_manifest(tmp_path):
    path = ck.write(ts.Checkpoint.from_state({"w": [1, 2, 3], "step": 7}), str(tmp_path), 7)
    assert os.path.basename(path) == "checkpoint_000007"
    manifest = ck.verify(path)
    assert manifest["iteration"] == 7 and ck.STATE_FILE in manifest["files"]
    assert ts.Checkpoint(path).load() == {"w": [1, 2, 3], "step": 7}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]  # no temporary folder left


def test_from_dir_copies_files_and_source_may_be_reused(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"\x00" * 1000)
    (src / "sub" / "meta.txt").write_text("hello")
    path = ck.write(ts.Checkpoint.from_dir(src), str(tmp_path / "out"), 1)
    (src / "model.bin").write_bytes(b"changed")
    c = ts.Checkpoint(path)
    assert open(os.path.join(c.as_dir(), "model.bin"), "rb").read() == b"\x00" * 1000
    assert open(os.path.join(c.as_dir(), "sub", "meta.txt")).read() == "hello"
    with pytest.raises(ck.CheckpointError, match="from_dir"):
        c.load()


def test_damaged_checkpoint_is_never_unpickled(tmp_path):
    path = ck.write(ts.Checkpoint.from_state({"a": 1}), str(tmp_path), 1)
    with open(os.path.join(path, ck.STATE_FILE), "r+b") as f:
        f.seek(5)
        f.write(b"X")
    with pytest.raises(ck.CheckpointError, match="checksum"):
        ts.Checkpoint(path).load()
    os.remove(os.path.join(path, ck.MANIFEST))
    with pytest.raises(ck.CheckpointError, match="manifest"):
        ts.Checkpoint(path).load()


def test_a_folder_not_written_by_tunesmith_is_not_unpickled(tmp_path):
    (tmp_path / ck.STATE_FILE).write_bytes(b"anything")
    with pytest.raises(ck.CheckpointError):
        ts.Checkpoint(tmp_path).load()


def test_rewriting_an_iteration_replaces_it(tmp_path):
    ck.write(ts.Checkpoint.from_state(1), str(tmp_path), 3)
    path = ck.write(ts.Checkpoint.from_state(2), str(tmp_path), 3)
    assert ts.Checkpoint(path).load() == 2
    assert json.load(open(os.path.join(path, ck.MANIFEST)))["iteration"] == 3


def test_a_held_name_is_written_beside_and_the_held_folder_stays_whole(tmp_path):
    held_path = ck.write(ts.Checkpoint.from_state("held"), str(tmp_path), 3)
    first = ck.write(ts.Checkpoint.from_state(1), str(tmp_path), 3, held={"checkpoint_000003"})
    second = ck.write(ts.Checkpoint.from_state(2), str(tmp_path), 3,
                      held={"checkpoint_000003", "checkpoint_000003_1"})
    assert [os.path.basename(p) for p in (first, second)] == ["checkpoint_000003_1", "checkpoint_000003_2"]
    assert [ts.Checkpoint(p).load() for p in (held_path, first, second)] == ["held", 1, 2]
    assert all(ck.CHECKPOINT_NAME.fullmatch(n) for n in os.listdir(tmp_path))


def test_in_memory_checkpoint_as_dir(temp_dir):
    c = ts.Checkpoint.from_state({"x": 1})
    assert c.load() == {"x": 1}
    folder = c.as_dir()
    assert os.path.exists(os.path.join(folder, ck.STATE_FILE))


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """The folder tempfile makes its temporary folders in, empty, to count what is left there."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_as_dir_writes_an_in_memory_checkpoint_once_per_object(temp_dir):
    c = ts.Checkpoint.from_state({"x": 1})
    folder = c.as_dir()
    assert c.as_dir() == folder and os.listdir(temp_dir) == [os.path.basename(folder)]


def resumable(config):
    start = ts.get_checkpoint()
    step = start.load()["step"] if start else 0
    for i in range(step, 3):
        ts.report({"i": i}, checkpoint=ts.Checkpoint.from_state({"step": i + 1}))


def test_checkpoints_reported_in_a_run_are_indexed_and_loadable(results_dir):
    result = ts.run(resumable, num_samples=1, verbose=0)
    t = result.trials[0]
    assert t.checkpoint is not None and t.checkpoint.iteration == 3
    assert t.checkpoint.load() == {"step": 3}
    assert os.path.dirname(t.checkpoint.path) == os.path.join(t.path, "checkpoints")
    assert [it for it, _ in result._store.checkpoints(t.id)] == [1, 2, 3]


def test_report_rejects_a_non_checkpoint(results_dir):
    result = ts.run(lambda c: ts.report({"a": 1}, checkpoint={"state": 1}), num_samples=1, verbose=0)
    assert "expects a tunesmith.Checkpoint, got dict" in result.trials[0].error


def many_checkpoints(config):
    for i in range(30):
        ts.report({"loss": abs(i - 10) + config["x"]}, checkpoint=ts.Checkpoint.from_state(i))


def _ckpt_dirs(trial):
    folder = os.path.join(trial.path, "checkpoints")
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def test_keep_latest_n_bounds_disk_and_leaves_no_orphans(results_dir):
    result = ts.run(many_checkpoints, space={"x": ts.uniform(0, 1)}, num_samples=20, keep=2, verbose=0)
    for t in result.trials:
        assert _ckpt_dirs(t) == ["checkpoint_000029", "checkpoint_000030"]
        assert [it for it, _ in result._store.checkpoints(t.id)] == [29, 30]  # index matches the disk
        assert t.checkpoint.load() == 29


def test_keep_best_n_by_metric_keeps_the_latest_too(results_dir):
    result = ts.run(many_checkpoints, space={"x": 0.5}, keep=2, keep_by="loss", metric="loss", mode="min",
                    verbose=0)
    t = result.trials[0]
    # the best two: i=10 (iteration 11), then i=9 and i=11 tie (the newer, iteration 12, wins); the latest (30)
    # stays beside them
    assert _ckpt_dirs(t) == ["checkpoint_000011", "checkpoint_000012", "checkpoint_000030"]


def test_bad_retention_arguments():
    with pytest.raises(ts.ConfigError, match="keep must be a positive integer"):
        ts.run(many_checkpoints, keep=0, verbose=0)
    with pytest.raises(ts.ConfigError, match="keep_by needs keep"):
        ts.run(many_checkpoints, keep_by="loss", metric="loss", mode="min", verbose=0)


# -- checkpoints at a URL (fsspec; file:// is a real fsspec filesystem: the same calls as s3://) -------------
def _uploaded(tmp_path, state, name="checkpoint_000003"):
    local = ck.write(ts.Checkpoint.from_state(state), str(tmp_path / "staging"), 3)
    url = f"file://{tmp_path}/bucket/exp/trials/trial_00001/checkpoints/{name}"
    ck.upload(local, url)
    return url


def test_a_checkpoint_uploaded_to_a_url_loads_and_verifies(tmp_path, temp_dir):
    url = _uploaded(tmp_path, {"w": [1, 2], "step": 3})
    remote = tmp_path / "bucket/exp/trials/trial_00001/checkpoints/checkpoint_000003"
    assert sorted(os.listdir(remote)) == [ck.MANIFEST, ck.STATE_FILE]
    assert ck.verify(url)["iteration"] == 3
    c = ts.Checkpoint(url, iteration=3)
    assert c.path == url and c.load() == {"w": [1, 2], "step": 3}
    local = c.as_dir()  # downloaded once, checked, reused
    assert not local.startswith(str(tmp_path / "bucket")) and c.as_dir() == local
    assert ck.verify(local)["iteration"] == 3
    assert ck.owner(url) == "trial_00001"


def test_loading_a_checkpoint_at_a_url_leaves_no_download_behind(tmp_path, temp_dir):
    url = _uploaded(tmp_path, {"step": 3})
    assert ts.Checkpoint(url).load() == {"step": 3}
    assert os.listdir(temp_dir) == []
    os.remove(tmp_path / "bucket/exp/trials/trial_00001/checkpoints/checkpoint_000003" / ck.MANIFEST)
    for get in (ts.Checkpoint.load, ts.Checkpoint.as_dir):
        with pytest.raises(ck.CheckpointError, match="incomplete upload"):
            get(ts.Checkpoint(url))
        assert os.listdir(temp_dir) == []  # nor an empty folder where the download failed


def test_uploading_an_iteration_again_replaces_it(tmp_path):
    _uploaded(tmp_path, 1)
    url = _uploaded(tmp_path, 2)
    assert ts.Checkpoint(url).load() == 2


def test_an_incomplete_upload_is_refused_and_leaves_no_partial_download(tmp_path):
    url = _uploaded(tmp_path, {"a": 1})
    os.remove(tmp_path / "bucket/exp/trials/trial_00001/checkpoints/checkpoint_000003" / ck.MANIFEST)
    with pytest.raises(ck.CheckpointError, match="incomplete upload"):
        ck.verify(url)
    out = tmp_path / "dl"
    with pytest.raises(ck.CheckpointError, match="incomplete upload"):
        ck.download(url, str(out))
    assert os.listdir(out) == []  # no .part folder, nothing under the final name


def test_a_checkpoint_changed_in_storage_is_never_unpickled(tmp_path):
    url = _uploaded(tmp_path, {"a": 1})
    state = tmp_path / "bucket/exp/trials/trial_00001/checkpoints/checkpoint_000003" / ck.STATE_FILE
    data = bytearray(state.read_bytes())
    data[5] ^= 0xFF
    state.write_bytes(bytes(data))  # same size: the driver's cheap check passes...
    assert ck.verify(url)["iteration"] == 3
    with pytest.raises(ck.CheckpointError, match="checksum"):  # ...the download's checksums do not
        ts.Checkpoint(url).load()
    state.write_bytes(b"short")
    with pytest.raises(ck.CheckpointError, match="bytes"):
        ck.verify(url)


def test_a_manifest_naming_a_file_outside_the_checkpoint_is_refused(tmp_path):
    url = _uploaded(tmp_path, {"a": 1})
    manifest = tmp_path / "bucket/exp/trials/trial_00001/checkpoints/checkpoint_000003" / ck.MANIFEST
    m = json.loads(manifest.read_text())
    m["files"]["../../escape.pkl"] = {"size": 1, "sha256": "0"}
    manifest.write_text(json.dumps(m))
    with pytest.raises(ck.CheckpointError, match="leave the checkpoint folder"):  # the documented error
        ck.download(url, str(tmp_path / "dl"))
    assert not (tmp_path / "escape.pkl").exists() and not (tmp_path / "dl" / "escape.pkl").exists()
    manifest.write_text("[]")  # not an object at all: the same error, not an AttributeError
    with pytest.raises(ck.CheckpointError, match="no 'files' table"):
        ck.download(url, str(tmp_path / "dl"))


def test_delete_removes_a_checkpoint_at_a_url_and_a_missing_one_is_no_error(tmp_path):
    from tunesmith._ledger import delete_checkpoint

    url = _uploaded(tmp_path, 1)
    exp = str(tmp_path / "exp")
    prefix = f"file://{tmp_path}/bucket/exp/trials/"
    assert delete_checkpoint(url, exp, prefix)
    assert not (tmp_path / "bucket/exp/trials/trial_00001/checkpoints/checkpoint_000003").exists()
    assert delete_checkpoint(url, exp, prefix)
    local = ck.write(ts.Checkpoint.from_state(1), str(tmp_path / "exp/trials/trial_00001/checkpoints"), 1)
    assert delete_checkpoint(local, exp)
    assert not os.path.exists(local)


def test_an_unknown_protocol_is_a_config_error_naming_the_url():
    with pytest.raises(ts.ConfigError, match="nosuchfs://x"):
        ck.storage_fs("nosuchfs://x/y", "storage")


# -- signed manifests: only a pickle this user's tunesmith wrote is loaded without being told to trust it ------
class _SideEffect:
    """Unpickling it creates the folder ``path``: the proof that a pickle's code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _foreign_checkpoint(folder, payload, sign_key=None, monkeypatch=None):
    """A checkpoint with a correct manifest (checksums match) made by someone else: unsigned, or signed with
    ``sign_key``."""
    if sign_key is None:
        path = ck.write(ts.Checkpoint.from_state(payload), str(folder), 1)
        manifest = json.loads(open(os.path.join(path, ck.MANIFEST)).read())
        del manifest["signature"]
        with open(os.path.join(path, ck.MANIFEST), "w") as f:
            json.dump(manifest, f)
        return path
    with monkeypatch.context() as m:
        m.setenv("TUNESMITH_KEY", sign_key)
        return ck.write(ts.Checkpoint.from_state(payload), str(folder), 1)


def test_a_checkpoint_signed_with_this_users_key_loads(tmp_path, _signing_key):
    path = ck.write(ts.Checkpoint.from_state({"w": 1}), str(tmp_path), 1)
    sig = json.load(open(os.path.join(path, ck.MANIFEST)))["signature"]
    assert sig["alg"] == "hmac-sha256" and len(sig["hmac"]) == 64
    assert ts.Checkpoint(path).load() == {"w": 1}
    assert _signing_key.read_text().strip() not in open(os.path.join(path, ck.MANIFEST)).read()  # key not in it


@pytest.mark.parametrize("who", ["unsigned", "foreign"])
def test_a_pickle_this_user_did_not_write_is_refused_and_not_run(tmp_path, monkeypatch, who):
    ran = tmp_path / "the_pickle_ran"
    path = _foreign_checkpoint(tmp_path / "shared", _SideEffect(ran), None if who == "unsigned" else "k" * 32,
                               monkeypatch)
    ck.verify(path)  # the checksums match: integrity is not origin
    with pytest.raises(ck.CheckpointError) as err:
        ts.Checkpoint(path).load()
    assert not ran.exists()
    message = str(err.value)
    assert path in message and "tunesmith trust" in message and "trust_foreign_pickle=True" in message
    assert ("not signed" if who == "unsigned" else "another key") in message
    # the user says they trust it: loaded (and its code ran, as unpickling does)
    ts.Checkpoint(path).load(trust_foreign_pickle=True)
    assert ran.is_dir()


def test_a_pickle_added_to_a_signed_checkpoint_that_does_not_list_it_is_refused_and_not_run(tmp_path):
    # a from_dir checkpoint (no state.pkl) this user signed, with a state.pkl dropped in afterwards: the
    # signature covers the manifest, the manifest does not list the pickle, so nothing vouches for it
    ran = tmp_path / "the_pickle_ran"
    source = tmp_path / "src"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"w")
    path = ck.write(ts.Checkpoint.from_dir(str(source)), str(tmp_path / "ckpts"), 1)
    import pickle

    with open(os.path.join(path, ck.STATE_FILE), "wb") as f:
        pickle.dump(_SideEffect(ran), f)
    ck.verify(path)  # the files the manifest lists are intact
    with pytest.raises(ck.CheckpointError, match="does not list"):
        ts.Checkpoint(path).load()
    assert not ran.exists()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("which", ["state.pkl", "manifest.json"])
def test_a_fifo_in_a_checkpoint_is_refused_not_opened(tmp_path, which):
    # opening a FIFO for reading blocks until someone writes: verify() (load(), `tunesmith trust`) hung
    path = ck.write(ts.Checkpoint.from_state({"w": 1}), str(tmp_path), 1)
    os.remove(os.path.join(path, which))
    os.mkfifo(os.path.join(path, which))
    with pytest.raises(ck.CheckpointError, match="not a regular file"):
        ck.verify(path)
    with pytest.raises(ck.CheckpointError):
        ts.Checkpoint(path).load()


@pytest.mark.parametrize("last", ["..", ".", "checkpoint_1/.."])
def test_a_checkpoint_url_whose_name_is_not_a_checkpoints_is_refused_before_anything_is_written(tmp_path, last,
                                                                                                 temp_dir):
    # a store someone else made named file://<exp>/trials/x/..: the download's "replace the old copy" removed
    # the parent of the temporary folder, the whole temporary directory
    keep = temp_dir / "someone_elses_file.txt"
    keep.write_text("mine")
    exp = tmp_path / "exp" / "trials" / "x"
    exp.mkdir(parents=True)
    (tmp_path / "exp" / "trials" / ck.MANIFEST).write_text('{"files": {}}')
    with pytest.raises(ck.CheckpointError, match="not a checkpoint folder's name"):
        ts.Checkpoint(f"file://{exp}/{last}").load()
    assert keep.read_text() == "mine" and sorted(p.name for p in temp_dir.iterdir()) == [keep.name]


def test_a_signed_manifest_changed_afterwards_is_refused(tmp_path):
    path = ck.write(ts.Checkpoint.from_state(1), str(tmp_path), 1)
    manifest = json.load(open(os.path.join(path, ck.MANIFEST)))
    manifest["iteration"] = 2
    json.dump(manifest, open(os.path.join(path, ck.MANIFEST), "w"))
    with pytest.raises(ck.CheckpointError, match="changed after it was signed"):
        ts.Checkpoint(path).load()


def test_resign_adopts_an_intact_checkpoint_and_refuses_a_damaged_one(tmp_path):
    path = _foreign_checkpoint(tmp_path / "a", {"x": 1})
    assert ck.resign(path) is True and ts.Checkpoint(path).load() == {"x": 1}
    assert ck.resign(path) is False  # signed by this key already
    damaged = _foreign_checkpoint(tmp_path / "b", {"x": 2})
    with open(os.path.join(damaged, ck.STATE_FILE), "ab") as f:
        f.write(b"!")
    with pytest.raises(ck.CheckpointError, match="checksum"):
        ck.resign(damaged)
    assert "signature" not in json.load(open(os.path.join(damaged, ck.MANIFEST)))


def test_the_key_file_is_made_once_private_and_outside_experiment_folders(tmp_path, monkeypatch):
    from tunesmith import _signing

    monkeypatch.delenv("TUNESMITH_KEY_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    key = _signing.key()
    path = tmp_path / "cfg" / "tunesmith" / "key"
    assert path.read_bytes().strip() == key and len(key) >= 32
    assert (path.stat().st_mode & 0o777) == 0o600
    assert os.listdir(path.parent) == ["key"]  # no temporary file left
    written = ck.write(ts.Checkpoint.from_state(1), str(tmp_path / "c"), 1)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other_user"))  # another user: another key
    with pytest.raises(ck.CheckpointError, match="another key"):
        ts.Checkpoint(written).load()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert ts.Checkpoint(written).load() == 1
    monkeypatch.setenv("TUNESMITH_KEY", "short")
    with pytest.raises(ts.ConfigError, match="TUNESMITH_KEY"):
        _signing.key()


def test_a_crafted_manifest_cannot_make_verify_read_outside_the_folder(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    path = ck.write(ts.Checkpoint.from_state(1), str(tmp_path / "c"), 1)
    good = json.load(open(os.path.join(path, ck.MANIFEST)))
    for files in ({"../../secret.txt": {"size": 9, "sha256": "0"}}, {"/etc/passwd": {"size": 1, "sha256": "0"}},
                  {"": {"size": 1, "sha256": "0"}}, {ck.STATE_FILE: {"size": "1", "sha256": 0}}, ["state.pkl"]):
        json.dump({**good, "files": files}, open(os.path.join(path, ck.MANIFEST), "w"))
        with pytest.raises(ck.CheckpointError):
            ck.verify(path)
    # a state.pkl that is a symbolic link to a file elsewhere is not read through
    json.dump(good, open(os.path.join(path, ck.MANIFEST), "w"))
    os.replace(os.path.join(path, ck.STATE_FILE), tmp_path / "elsewhere.pkl")
    os.symlink(tmp_path / "elsewhere.pkl", os.path.join(path, ck.STATE_FILE))
    with pytest.raises(ck.CheckpointError, match="unreadable"):
        ck.verify(path)


# -- from_dir: what is in the folder goes in, or a clear error ------------------------------------------------
def test_from_dir_copies_a_linked_folder_by_content_as_it_does_a_linked_file(tmp_path):
    shared = tmp_path / "shared_tokenizer"
    shared.mkdir()
    (shared / "vocab.txt").write_text("a b c")
    src = tmp_path / "model"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w")
    (src / "tokenizer").symlink_to(shared, target_is_directory=True)
    (src / "config.json").symlink_to(tmp_path / "cfg")
    (tmp_path / "cfg").write_text("{}")
    path = ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)
    assert sorted(ck.verify(path)["files"]) == ["config.json", "tokenizer/vocab.txt", "weights.bin"]
    assert (tmp_path / "ckpts" / "checkpoint_000001" / "tokenizer" / "vocab.txt").read_text() == "a b c"
    assert not os.path.islink(os.path.join(path, "tokenizer"))  # a copy: the checkpoint stands alone


@pytest.mark.timeout(20)
@pytest.mark.parametrize("odd", ["loop", "fifo", "foreign_manifest"])
def test_from_dir_refuses_what_it_cannot_copy_faithfully_naming_it(tmp_path, odd):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(b"w")
    if odd == "loop":
        (src / "sub" / "up").symlink_to(src, target_is_directory=True)
    elif odd == "fifo":
        os.mkfifo(src / "sub" / "pipe")
    else:  # the user's own manifest.json: the checkpoint's manifest has that name
        (src / ck.MANIFEST).write_text('{"model": "mine"}')
    with pytest.raises(ck.CheckpointError) as caught:
        ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)
    named = {"loop": "sub/up", "fifo": "sub/pipe", "foreign_manifest": ck.MANIFEST}[odd]
    assert named in str(caught.value), caught.value
    assert not os.path.exists(tmp_path / "ckpts" / "checkpoint_000001")  # nothing half-written left in place


def test_from_dir_of_a_restored_checkpoint_folder_rebuilds_its_manifest(tmp_path):
    first = ck.write(ts.Checkpoint.from_dir(str(_ckpt_source(tmp_path))), str(tmp_path / "a"), 1)
    again = ck.write(ts.Checkpoint.from_dir(first), str(tmp_path / "b"), 2)  # re-reported as it was restored
    assert sorted(ck.verify(again)["files"]) == ["weights.bin"] and ck.verify(again)["iteration"] == 2


def _ckpt_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w")
    return src


# -- a checkpoint's files are read in its folder: never through a link to a folder under it ---------------------
def _linked_out(path, sub, outside):
    """Move the folder ``sub`` of the checkpoint ``path`` to ``outside`` and leave a link to it in its place: the
    same files, checksums matching, but no longer in the checkpoint's folder."""
    os.rename(os.path.join(path, sub), outside)
    os.symlink(outside, os.path.join(path, sub), target_is_directory=True)


@pytest.mark.parametrize("linked", ["sub", "sub/deeper"])
def test_a_file_under_a_linked_folder_in_a_checkpoint_is_refused_not_read_through(tmp_path, linked):
    # verify() checked only the file's own name for a link: a manifest entry sub/deeper/w.bin was read through a
    # link `sub` (or `sub/deeper`) to a folder anywhere, while the Ray restore path refused it
    import pickle

    ran = tmp_path / "the_pickle_ran"
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "w.bin").write_bytes(b"weights")
    with open(src / ck.STATE_FILE, "wb") as f:
        pickle.dump(_SideEffect(ran), f)
    path = ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)
    ck.verify(path)
    outside = tmp_path / "elsewhere"
    _linked_out(path, linked, outside)
    for read in (ck.verify, lambda p: ts.Checkpoint(p).load(), ck.resign):  # verify, load, `tunesmith trust`
        with pytest.raises(ck.CheckpointError) as caught:
            read(path)
        message = str(caught.value)
        assert "sub/deeper/w.bin" in message and f"symbolic link ({linked})" in message, message
    assert not ran.exists()  # nothing was unpickled
    assert (outside / ("w.bin" if linked == "sub/deeper" else "deeper/w.bin")).read_bytes() == b"weights"
    assert os.path.islink(os.path.join(path, linked))  # refused, left as it was


def test_a_state_pkl_that_is_a_link_is_not_unpickled_even_when_its_pickle_is_trusted(tmp_path):
    # trust_foreign_pickle trusts the checkpoint's pickle, not a file elsewhere that a link in its folder names
    import pickle

    ran = tmp_path / "the_pickle_ran"
    path = ck.write(ts.Checkpoint.from_dir(str(_ckpt_source(tmp_path))), str(tmp_path / "ckpts"), 1)
    with open(tmp_path / "elsewhere.pkl", "wb") as f:
        pickle.dump(_SideEffect(ran), f)
    os.symlink(tmp_path / "elsewhere.pkl", os.path.join(path, ck.STATE_FILE))
    with pytest.raises(ck.CheckpointError, match=ck.STATE_FILE):
        ts.Checkpoint(path).load(trust_foreign_pickle=True)
    assert not ran.exists()


def test_uploading_a_checkpoint_with_a_linked_folder_is_refused_and_replaces_nothing(tmp_path):
    # upload() read the files its manifest lists by name: through a link `sub` to a folder outside the checkpoint
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "w.bin").write_bytes(b"weights")
    local = ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "staging"), 3)
    url = f"file://{tmp_path}/bucket/checkpoint_000003"
    ck.upload(local, url)  # an earlier upload of the same iteration
    _linked_out(local, "sub", tmp_path / "elsewhere")
    with pytest.raises(ck.CheckpointError, match=r"sub/w\.bin lies under a symbolic link \(sub\)"):
        ck.upload(local, url)
    assert ck.verify(url)["files"].keys() == {"sub/w.bin"}  # the earlier upload is whole
    assert (tmp_path / "bucket" / "checkpoint_000003" / "sub" / "w.bin").read_bytes() == b"weights"


def test_as_dir_of_a_checkpoint_whose_folder_was_deleted_names_it(tmp_path):
    """as load() does: a CheckpointError naming the folder, not its path handed on as if it were there (the caller's
    open() then failed on a file in it, saying nothing of the checkpoint)."""
    import re
    import shutil

    path = ck.write(ts.Checkpoint.from_state({"w": 1}), str(tmp_path), 3)
    c = ts.Checkpoint(path)
    shutil.rmtree(path)
    for get in (ts.Checkpoint.as_dir, ts.Checkpoint.load):
        with pytest.raises(ck.CheckpointError, match=re.escape(f"checkpoint folder {path} does not exist")):
            get(c)
