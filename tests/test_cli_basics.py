import json
import subprocess
import sys

import pytest

from hicra import __version__
from hicra.cli import main
from hicra.errors import InputError
from hicra.fileio import atomic_dir, atomic_path, write_json


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "hicra", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"hicra {__version__}"


def test_help_lists_usage(capsys):
    assert main([]) == 0
    assert "usage: hicra" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["anchors", "run", "--bogus"], "unrecognized arguments: --bogus"),
    (["anchors", "run", "--split", "bogus"], "invalid choice: 'bogus'"),
    (["grams", "mine"], "the following arguments are required"),
    (["nosuchverb"], "invalid choice: 'nosuchverb'"),
])
def test_usage_errors_are_one_line_with_exit_code_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and needle in err and "usage:" not in err


def test_input_error_message_names_file_row_field():
    err = InputError("not a number", path="data.jsonl", row=7, field="reward")
    assert str(err) == "data.jsonl:7, field 'reward': not a number"
    # rows count from 1 everywhere; a Parquet row (no lines) says so, and several fields looked for are all named
    err = InputError("not a number", path="data.parquet", row=7, field="reward", table_row=True)
    assert str(err) == "data.parquet, row 7 (1-based), field 'reward': not a number"
    err = InputError("none found", path="data.jsonl", row=2, field=("response", "solution", "completion"))
    assert str(err) == "data.jsonl:2, fields 'response', 'solution' or 'completion': none found"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os

    target = tmp_path / "report.html"
    write_json(target, {})
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    import os

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_text("v1")
        assert not target.exists()  # nothing under the final name while the folder is written
    assert (target / "weights.bin").read_text() == "v1"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~mask
    # a save that fails part-way leaves the old folder as it was, and no temp folder
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights.bin").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert sorted(p.name for p in target.iterdir()) == ["weights.bin"]
    assert (target / "weights.bin").read_text() == "v1"
    # a complete save replaces the old folder whole: files the new one lacks are gone, and nothing is left aside
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(InputError, match="a file of that name exists"):
        with atomic_dir(tmp_path / "model"):
            pass
    with pytest.raises(InputError, match="cannot write here"):
        with atomic_dir(tmp_path / "model" / "inner"):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_file_lock_makes_a_second_holder_wait_and_says_so(tmp_path):
    import threading
    import time

    from hicra.fileio import file_lock

    lock, events = tmp_path / "sub" / ".x.lock", []

    def second():
        with file_lock(lock, on_wait=lambda p: events.append(("wait", p))) as held:
            events.append(("held", held))

    with file_lock(lock) as held:
        assert held and lock.is_file()
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        assert events == [("wait", lock)]  # still waiting while the first holds the lock
    t.join(timeout=10)
    assert events == [("wait", lock), ("held", True)]
    with pytest.raises(InputError, match="is a file"):
        with file_lock(lock / "below"):
            pass


def test_dir_lock_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    from hicra.fileio import dir_lock

    run = tmp_path / "run"
    with dir_lock(run):
        assert run.is_dir()
        with pytest.raises(InputError, match="another process is writing this run directory now"):
            with dir_lock(run):
                pass
    with dir_lock(run):  # released with the block
        pass
