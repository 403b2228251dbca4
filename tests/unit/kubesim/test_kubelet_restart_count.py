"""A container the runtime forgot (a node power-off clears /run) restarts with the count its
log directory implies, so the new container writes a new log file (calcRestartCountByLogDir)."""

from __future__ import annotations

from kubesim.kubelet.pods import restart_count_from_logs


def test_no_directory_or_no_logs_start_at_zero(tmp_path):
    assert restart_count_from_logs(tmp_path / "missing") == 0
    assert restart_count_from_logs(tmp_path) == 0


def test_one_past_the_highest_log_rotated_ones_included(tmp_path):
    for name in ("0.log", "1.log", "3.log.20261128-150501", "notes.txt", "x.log"):
        (tmp_path / name).write_text("")
    (tmp_path / "7.log").mkdir()  # a directory is no log file
    assert restart_count_from_logs(tmp_path) == 4
