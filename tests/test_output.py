"""`-o` writes through, never over: devices, FIFOs and /proc/self/fd links are written in place, symlinks
are followed, regular files are replaced atomically with their mode kept, and a failed write leaves no temp
file and records nothing. Every device here is made with mknod in a temp folder: never the machine's /dev."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import run_cli
from test_bad_inputs import scan_json

NETAUDIT = [sys.executable, "-m", "netaudit"]


@pytest.fixture
def result(tmp_path) -> Path:
    path = tmp_path / "r.json"
    path.write_text(scan_json())
    return path


def need_root():
    if os.geteuid() != 0:
        pytest.skip("mknod and mount need root (CI runs as root)")


def test_a_private_null_device_stays_a_device(tmp_path, result):
    need_root()
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    proc = run_cli("convert", str(result), "--format", "html", "-o", str(null))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "r.json"]  # no temp file beside it


def test_a_fifo_is_written_to_its_reader_and_stays_a_fifo(tmp_path, result):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    proc = run_cli("convert", str(result), "--format", "json", "-o", str(fifo))
    reader.join(30)
    assert proc.returncode == 0, proc.stderr
    assert b'"netaudit/scan-v1"' in got[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symlink_is_followed_and_its_target_replaced_with_its_mode(tmp_path, result):
    target = tmp_path / "real.txt"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    proc = run_cli("convert", str(result), "--format", "text", "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "127.0.0.1" in target.read_text() and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_new_file_follows_the_umask_and_a_dangling_link_makes_its_target(tmp_path, result):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "made.json")
    proc = run_cli("convert", str(result), "--format", "json", "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and (tmp_path / "made.json").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "made.json").stat().st_mode) == 0o666 & ~umask


def test_a_link_to_proc_self_fd_1_writes_to_stdout_and_stays_a_link(tmp_path, result):
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")  # what /dev/stdout is
    proc = run_cli("convert", str(result), "--format", "json", "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert '"netaudit/scan-v1"' in proc.stdout
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"


def test_dash_is_stdout(result):
    proc = run_cli("convert", str(result), "--format", "json", "-o", "-")
    assert proc.returncode == 0 and '"netaudit/scan-v1"' in proc.stdout
    assert not Path("-").exists()


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 256 KiB tmpfs of the test's own, filled to the last block."""
    need_root()
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(mount / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_no_temp_file_keeps_the_result_and_records_nothing(tmp_path, result, full_tmpfs):
    store = tmp_path / "h.sqlite"
    proc = run_cli("report", str(result), "--store", str(store), "--format", "html", "-o", str(full_tmpfs / "r.html"))
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "not recorded" in lines[0], lines
    assert sorted(p.name for p in full_tmpfs.iterdir()) == ["filler"]
    kept = Path(lines[0].split("kept in ", 1)[1].split(" ", 1)[0])
    try:
        again = run_cli("convert", str(kept), "--format", "text")
        assert again.returncode == 0 and "127.0.0.1" in again.stdout  # the result is readable
    finally:
        kept.unlink()
    listed = run_cli("history", "--store", str(store))
    assert listed.returncode == 0 and "no runs" in listed.stdout, listed.stdout


def test_stdout_on_a_full_device_is_one_line_and_exit_5(tmp_path, result):
    need_root()
    full = tmp_path / "full"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # a private /dev/full
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as in a user's shell
    with open(full, "w") as out:
        proc = subprocess.run([*NETAUDIT, "convert", str(result), "--format", "text"], stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=buffered)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 5 and len(lines) == 1 and "standard output" in lines[0], proc.stderr
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_an_unwritable_output_is_refused_before_the_first_packet(tmp_path):
    """Exit 2, no connection to the one port the scan was aimed at, and no history store made."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    store = tmp_path / "store" / "h.sqlite"
    try:
        for output in ("missing-dir/out.json", "missing-dir/out.jsonl", "missing-dir/out.html"):
            proc = run_cli("scan", f"127.0.0.1:{port}", "--engine", "connect", "--store", str(store), "-o",
                           str(tmp_path / output))
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            with pytest.raises(BlockingIOError):
                listener.accept()  # nothing connected
        assert not store.parent.exists()
    finally:
        listener.close()


def test_a_link_to_proc_self_fd_1_appends_to_the_file_stdout_is(tmp_path, result):
    """`{ echo header; netaudit … -o /dev/stdout; echo footer; } >> log`: the log keeps its header and its
    footer, and stays the same file (nothing renamed over it)."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    log = tmp_path / "log"
    log.write_text("header\n")
    inode = log.stat().st_ino
    with open(log, "a") as out:
        proc = subprocess.run([*NETAUDIT, "convert", str(result), "--format", "json", "-o", str(link)], stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=60)
        out.write("footer\n")
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert text.startswith("header\n{") and text.endswith("}\nfooter\n") and '"netaudit/scan-v1"' in text
    assert log.stat().st_ino == inode


def test_the_text_legend_explains_the_marks_the_matrix_shows_and_no_other(tmp_path):
    """Two vantages: `lab` (a trusted segment without an allow rule: OPEN!) and `other` (in no segment, where
    the port is closed: blocked). The legend must hold the marks of every column, and nothing else."""
    from test_bad_inputs import POLICY

    from netaudit.outputs.render import CELL_MARKS

    (tmp_path / "lab.json").write_text(scan_json())
    (tmp_path / "other.json").write_text(scan_json(vantage="other", endpoints__0__state="closed"))
    (tmp_path / "p.toml").write_text(POLICY)
    proc = run_cli("report", str(tmp_path / "lab.json"), str(tmp_path / "other.json"), "--policy",
                   str(tmp_path / "p.toml"), "--no-history", "--format", "text")
    assert proc.returncode in (0, 1), proc.stderr
    text = proc.stdout
    table = text.split("REACHABILITY\n", 1)[1].split("\n\nLEGEND\n", 1)[0].splitlines()
    legend = text.split("\n\nLEGEND\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[0].split()[2:] == ["lab", "other"], table
    shown = {word for row in table[1:] for word in row.split()[2:] if word in CELL_MARKS.values()}
    assert shown == {"OPEN!", "blocked"}, table
    assert [line.split()[0] for line in legend] == ["OPEN!", "blocked"], legend
