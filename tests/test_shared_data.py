"""Tests that need ../shared/data skip without it on a developer's machine, but fail under CI=true."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from conftest import shared_data


def test_missing_shared_folder_fails_under_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED", tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        shared_data("no-such-folder")
    (tmp_path / "present").mkdir()
    with pytest.raises(pytest.fail.Exception, match="images"):
        shared_data("present", needs="images")  # the folder without what the test reads
    assert shared_data("present") == tmp_path / "present"
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        shared_data("no-such-folder")


def test_a_data_test_fails_under_ci_without_the_data(tmp_path):
    """End to end: a real test of test_dataset.py, run by pytest with the data moved away."""
    env = {**os.environ, "CI": "true", "STREAMSEG_SHARED": str(tmp_path / "nowhere")}
    test = Path(__file__).with_name("test_dataset.py")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"{test}::test_repo_split_file_matches_the_data"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 1, p.stdout[-2000:]
    assert "1 error" in p.stdout and "CI=true promises ../shared/data" in p.stdout and "skipped" not in p.stdout
