# SPDX-License-Identifier: BSD-2-Clause
"""index.db has one schema and one owner: the receiver, the dissection path and
`pcapline import` create it through the same code, so an import's index is the
receiver's (compared with `sqlite3 index.db .schema`, byte for byte); a database of a
newer schema version is refused by the daemon (error exit) and by the CLI (error), with
a message naming the file, its version and the supported one, and is left untouched.
"""
import io
import sqlite3
import struct
import subprocess
import tarfile
from pathlib import Path

from conftest import Proc, free_port, tls_args, wait_listening
from netns import wait_for
from test_export import PCAPLINE

SUPPORTED = 2


def schema_text(db):
    return subprocess.run(["sqlite3", str(db), ".schema"], capture_output=True, text=True,
                          check=True).stdout


def receiver_index(receiver, certs, datadir, tmp_path, procs):
    """Starts the receiver on datadir until it is up (index.db is opened before), then
    stops it."""
    port = free_port()
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", datadir] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log")
    procs.append(rx)
    wait_listening(port)
    wait_for(lambda: "listening on" in rx.text(), 30, "receiver start", rx.text)
    assert rx.stop() == 0, rx.text()
    return Path(datadir) / "index.db"


def tiny_archive(path):
    rec = bytes(range(60))
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as t:
        for i in range(3):
            data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            data += struct.pack("<IIII", 1700000000 + i, 0, 60, 60) + rec
            ti = tarfile.TarInfo(f"s1/{i}.pcap")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def test_import_index_schema_is_the_receivers(binaries, certs, tmp_path, procs):
    _, receiver = binaries
    daemon = receiver_index(receiver, certs, tmp_path / "data", tmp_path, procs)
    archive = tmp_path / "tiny.tar.gz"
    tiny_archive(archive)
    view = tmp_path / "view"
    p = subprocess.run([PCAPLINE, "import", archive, "--dir", view], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert schema_text(view / "index.db") == schema_text(daemon)
    with sqlite3.connect(f"file:{view}/index.db?mode=ro", uri=True) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(SUPPORTED),)
        assert c.execute("SELECT count(*), sum(packets) FROM segments").fetchone() == (1, 3)
    # The imported repository can be dissected and queried like the receiver's.
    p = subprocess.run([PCAPLINE, "reindex", "--dir", view, "--from", "2023-11-14T22:13:00Z",
                        "--to", "2023-11-14T22:14:00Z"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def newer(db, version=SUPPORTED + 1):
    c = sqlite3.connect(db)
    c.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(version),))
    c.commit()
    # Into the file itself, so that its bytes are all there is to compare.
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return db.read_bytes()


def test_newer_schema_refused_by_daemon_and_cli(binaries, certs, tmp_path, procs):
    _, receiver = binaries
    data = tmp_path / "data"
    db = receiver_index(receiver, certs, data, tmp_path, procs)
    before = newer(db)
    want = f"{db}: schema version {SUPPORTED + 1} is newer than this pcapline supports ({SUPPORTED})"

    port = free_port()
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              tmp_path / "receiver2.log")
    procs.append(rx)
    rc = rx.wait(timeout=30)
    assert rc != 0
    assert want in rx.text(), rx.text()

    for argv in (["export", "--from", "0", "--to", "now", "-o", tmp_path / "x.tar.gz", "--dir", data],
                 ["conns", "--dir", data]):
        p = subprocess.run([PCAPLINE] + argv, capture_output=True, text=True)
        assert p.returncode != 0, (argv, p.stderr)
        assert want in p.stderr, (argv, p.stderr)
    archive = tmp_path / "tiny.tar.gz"
    tiny_archive(archive)
    p = subprocess.run([PCAPLINE, "import", archive, "--dir", data], capture_output=True, text=True)
    assert p.returncode != 0 and want in p.stderr, p.stderr
    # Nothing was changed, nothing set aside as damaged.
    assert db.read_bytes() == before
    assert not list(data.glob("index.db.corrupt-*"))
    assert not (data / "sensors").exists() or not list((data / "sensors").rglob("*.pcap"))


def test_receiver_migrates_import_shaped_v1_in_place(binaries, certs, tmp_path, procs):
    """An index.db that the previous pcapline import wrote (schema "1", segments only) is
    completed in place by the receiver: the schema becomes a new index's and the version the
    current one (the row, whose file is not there, is then removed by the start-up reconcile)."""
    _, receiver = binaries
    data = tmp_path / "data"
    data.mkdir()
    src = Path(__file__).resolve().parents[1] / "data" / "index-v1" / "import.sql"
    with sqlite3.connect(data / "index.db") as c:
        c.executescript(src.read_text())
    db = receiver_index(receiver, certs, data, tmp_path, procs)
    log = (tmp_path / "receiver.log").read_text()
    assert f"{db}: schema migrated in place from version 1 to {SUPPORTED}" in log, log
    fresh = receiver_index(receiver, certs, tmp_path / "fresh", tmp_path, procs)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c, \
            sqlite3.connect(f"file:{fresh}?mode=ro", uri=True) as f:
        q = ("SELECT type, name, tbl_name, CASE name WHEN 'segments' THEN '' ELSE sql END "
             "FROM sqlite_master ORDER BY type, name")
        assert c.execute(q).fetchall() == f.execute(q).fetchall()
        assert c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(SUPPORTED),)
