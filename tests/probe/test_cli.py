"""The `crailpy` command end to end, against a real namenode and datanodes.

Every command runs as `python -m crailpy ...` in a child process and talks to
the module's cluster (2 DRAM datanodes and 1 flash datanode) over loopback.
Each test works under its own top-level directory, so the tests share the
cluster without seeing each other's files.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import re
from pathlib import Path

import pytest

from .conftest import ProbeCluster, ok, one_line_error, run_cli, unused_port

pytestmark = pytest.mark.probe

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def out(result) -> str:
    return result.stdout.decode(errors="replace")


def ls_names(cluster: ProbeCluster, *args: str) -> list[str]:
    return out(ok(cluster.fs("ls", *args))).splitlines()


# ---- making directories ----

def test_mkdir_and_mkdir_p(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "/mk"))
    ok(c.fs("mkdir", "/mk/a", "/mk/b"))
    assert ls_names(c, "/mk") == ["/mk/a", "/mk/b"]

    # Without -p, a missing parent and an existing directory are both errors.
    line = one_line_error(c.fs("mkdir", "/mk/x/y/z"))
    assert "/mk/x" in line
    line = one_line_error(c.fs("mkdir", "/mk/a"))
    assert "exists" in line

    ok(c.fs("mkdir", "-p", "/mk/x/y/z"))
    ok(c.fs("mkdir", "-p", "/mk/x/y/z"))  # -p: no error if it exists
    assert ls_names(c, "-R", "/mk/x") == ["/mk/x/y", "/mk/x/y/z"]
    stat = out(ok(c.fs("stat", "/mk/x/y")))
    assert "type: directory" in stat and "size: 1 entries" in stat


def test_mkdir_table_and_multifile(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "/kinds"))
    ok(c.fs("mkdir", "--table", "/kinds/t"))
    ok(c.fs("mkdir", "--multifile", "/kinds/m"))
    assert "type: table" in out(ok(c.fs("stat", "/kinds/t")))
    assert "type: multifile" in out(ok(c.fs("stat", "/kinds/m")))
    types = {line.split()[-1]: line.split()[0] for line in ls_names(c, "-l", "/kinds")}
    assert types == {"/kinds/t": "t", "/kinds/m": "m"}

    # A table holds keys: put into it and read back.
    ok(c.fs("put", "-", "/kinds/t/key1", input=b"value-1"))
    assert out(ok(c.fs("cat", "/kinds/t/key1"))) == "value-1"
    assert ls_names(c, "/kinds/t") == ["/kinds/t/key1"]
    # Making it again is an error without -p, none with it.
    assert "exists" in one_line_error(c.fs("mkdir", "--table", "/kinds/t"))
    ok(c.fs("mkdir", "-p", "--table", "/kinds/t"))
    ok(c.fs("mkdir", "-p", "--multifile", "/kinds/m"))


def test_mkdir_p_makes_parents_of_tables_and_multifiles(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "-p", "--table", "/mkp/a/t"))
    ok(c.fs("mkdir", "-p", "--multifile", "/mkp/b/m"))
    assert "type: multifile" in out(ok(c.fs("stat", "/mkp/b/m")))


# ---- moving bytes ----

def test_put_and_get_a_file(shared_cluster: ProbeCluster, tmp_path: Path) -> None:
    c = shared_cluster
    data = os.urandom(3 * MiB + 12345)  # several blocks and a partial one
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    ok(c.fs("mkdir", "/pg"))
    ok(c.fs("put", str(src), "/pg/src.bin"))

    dst = tmp_path / "back.bin"
    ok(c.fs("get", "/pg/src.bin", str(dst)))
    assert sha256(dst.read_bytes()) == sha256(data)

    # get into an existing local directory names the copy after the source
    into = tmp_path / "into"
    into.mkdir()
    ok(c.fs("get", "/pg/src.bin", str(into)))
    assert sha256((into / "src.bin").read_bytes()) == sha256(data)

    # put into an existing remote directory does the same
    ok(c.fs("mkdir", "/pg/dir"))
    ok(c.fs("put", str(src), "/pg/dir"))
    assert f"size: {len(data)} bytes" in out(ok(c.fs("stat", "/pg/dir/src.bin")))

    # an empty file survives the round trip
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    ok(c.fs("put", str(empty), "/pg/empty"))
    ok(c.fs("get", "/pg/empty", str(tmp_path / "empty.back")))
    assert (tmp_path / "empty.back").read_bytes() == b""


def test_put_existing_needs_force(shared_cluster: ProbeCluster, tmp_path: Path) -> None:
    c = shared_cluster
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first version\n" * 1000)
    second.write_bytes(os.urandom(MiB + 7))
    ok(c.fs("mkdir", "/force"))
    ok(c.fs("put", str(first), "/force/f"))

    line = one_line_error(c.fs("put", str(second), "/force/f"))
    assert "/force/f" in line and "exists" in line
    assert out(ok(c.fs("cat", "/force/f"))).encode() == first.read_bytes()  # untouched

    ok(c.fs("put", "-f", str(second), "/force/f"))
    back = tmp_path / "back"
    ok(c.fs("get", "/force/f", str(back)))
    assert back.read_bytes() == second.read_bytes()

    tiny = tmp_path / "tiny"  # small enough for the namenode to hold: the same rules
    tiny.write_bytes(b"tiny\n")
    ok(c.fs("put", str(tiny), "/force/t"))
    line = one_line_error(c.fs("put", str(tiny), "/force/t"))
    assert "/force/t" in line and "exists" in line
    assert out(ok(c.fs("cat", "/force/t"))) == "tiny\n"
    ok(c.fs("put", "-f", str(first), "/force/t"))
    ok(c.fs("put", "-f", str(tiny), "/force/f"))
    assert out(ok(c.fs("cat", "/force/f"))) == "tiny\n"


def _make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "emptydir").mkdir()
    (root / "top.txt").write_bytes(b"top level\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "sub" / "big.bin").write_bytes(os.urandom(2 * MiB + 333))
    (root / "sub" / "small.bin").write_bytes(os.urandom(777))
    (root / "sub" / "deeper" / "leaf.txt").write_bytes(b"leaf\n" * 100)


def _assert_same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.funny_files, cmp.report()
    for name in cmp.common_files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{a / name} differs"
    for name in cmp.common_dirs:
        _assert_same_tree(a / name, b / name)


def test_put_and_get_a_directory_tree(shared_cluster: ProbeCluster, tmp_path: Path) -> None:
    c = shared_cluster
    tree = tmp_path / "tree"
    _make_tree(tree)

    ok(c.fs("put", str(tree), "/treecopy"))  # a new remote name
    assert ls_names(c, "-R", "/treecopy") == [
        "/treecopy/empty.bin", "/treecopy/emptydir", "/treecopy/sub", "/treecopy/sub/big.bin",
        "/treecopy/sub/deeper", "/treecopy/sub/deeper/leaf.txt", "/treecopy/sub/small.bin",
        "/treecopy/top.txt"]

    back = tmp_path / "back"
    ok(c.fs("get", "/treecopy", str(back)))  # a new local name
    _assert_same_tree(tree, back)

    # Into existing directories on both sides: the tree lands under its own name.
    ok(c.fs("mkdir", "/treedir"))
    ok(c.fs("put", str(tree), "/treedir"))
    local = tmp_path / "localdir"
    local.mkdir()
    ok(c.fs("get", "/treedir/tree", str(local)))
    _assert_same_tree(tree, local / "tree")


def test_put_from_stdin_and_get_to_stdout(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    data = os.urandom(2 * MiB + 99)
    ok(c.fs("mkdir", "/pipe"))
    ok(c.fs("put", "-", "/pipe/blob", input=data))
    got = ok(c.fs("get", "/pipe/blob", "-")).stdout
    assert len(got) == len(data) and sha256(got) == sha256(data)
    got = ok(c.fs("get", "/pipe/blob")).stdout  # "-" is the default
    assert sha256(got) == sha256(data)


def test_cat(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "/cat"))
    ok(c.fs("put", "-", "/cat/a", input=b"alpha\n"))
    ok(c.fs("put", "-", "/cat/b", input=b"beta\n"))
    assert ok(c.fs("cat", "/cat/a")).stdout == b"alpha\n"
    assert ok(c.fs("cat", "/cat/a", "/cat/b", "/cat/a")).stdout == b"alpha\nbeta\nalpha\n"
    assert "not a file" in one_line_error(c.fs("cat", "/cat"))


def test_cat_and_get_of_a_multifile(shared_cluster: ProbeCluster, tmp_path: Path) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "--multifile", "/mf"))
    parts = [b"part-one|" * 1000, b"part-two|" * 50000, b""]
    with c.connect() as store:
        for part in parts:
            with store.append_part("/mf") as w:
                w.write(part)
    whole = b"".join(parts)
    assert ok(c.fs("cat", "/mf")).stdout == whole
    ok(c.fs("get", "/mf", str(tmp_path / "mf")))
    assert (tmp_path / "mf").read_bytes() == whole


def test_du_and_stat_count_multifile_bytes(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "/mfdu"))
    ok(c.fs("mkdir", "--multifile", "/mfdu/m"))
    with c.connect() as store:
        for part in (b"a" * 1000, b"b" * 3000):
            with store.append_part("/mfdu/m") as w:
                w.write(part)
        assert store.open_multifile("/mfdu/m").size == 4000  # the parts are there
    assert out(ok(c.fs("du", "/mfdu"))).split() == ["4000", "/mfdu"]
    assert out(ok(c.fs("du", "/mfdu/m"))).split() == ["4000", "/mfdu/m"]
    assert "size: 4000 bytes" in out(ok(c.fs("stat", "/mfdu/m")))
    assert ls_names(c, "-l", "/mfdu")[0].split()[:2] == ["m", "4000"]


# ---- listing and looking ----

def test_ls_short_long_recursive(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "-p", "/lst/dir/inner"))
    ok(c.fs("mkdir", "--table", "/lst/tab"))
    ok(c.fs("mkdir", "--multifile", "/lst/multi"))
    ok(c.fs("put", "-", "/lst/file", input=b"x" * 1234))
    ok(c.fs("put", "-", "/lst/dir/inner/deep", input=b"d"))

    assert ls_names(c, "/lst") == ["/lst/dir", "/lst/file", "/lst/multi", "/lst/tab"]
    assert ls_names(c, "/lst/file") == ["/lst/file"]  # a file lists itself

    long = {line.split()[-1]: line.split() for line in ls_names(c, "-l", "/lst")}
    assert {p: f[0] for p, f in long.items()} == {
        "/lst/dir": "d", "/lst/file": "-", "/lst/multi": "m", "/lst/tab": "t"}
    assert long["/lst/file"][1] == "1234"
    assert long["/lst/file"][2] == "dram"

    assert ls_names(c, "-R", "/lst") == [
        "/lst/dir", "/lst/dir/inner", "/lst/dir/inner/deep", "/lst/file", "/lst/multi",
        "/lst/tab"]
    recursive_long = ls_names(c, "-l", "-R", "/lst/dir")
    assert [line.split()[0] for line in recursive_long] == ["d", "-"]
    assert "/lst" in ls_names(c)  # no path: the root


def test_rm_and_rm_r(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "-p", "/rm/full/sub"))
    ok(c.fs("put", "-", "/rm/full/sub/f", input=b"data" * 100))
    ok(c.fs("put", "-", "/rm/lone", input=b"lone"))

    ok(c.fs("rm", "/rm/lone"))
    assert "no such file" in one_line_error(c.fs("stat", "/rm/lone"))

    line = one_line_error(c.fs("rm", "/rm/full"))
    assert "/rm/full" in line and "not empty" in line
    assert ls_names(c, "-R", "/rm") == ["/rm/full", "/rm/full/sub", "/rm/full/sub/f"]

    ok(c.fs("rm", "-r", "/rm/full"))
    assert ls_names(c, "/rm") == []
    ok(c.fs("mkdir", "/rm/empty"))
    ok(c.fs("rm", "/rm/empty"))  # an empty directory needs no -r
    assert ls_names(c, "/rm") == []


def test_mv_rename_and_into_directory(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    data = os.urandom(MiB + 5)
    ok(c.fs("mkdir", "-p", "/mv/target"))
    ok(c.fs("put", "-", "/mv/old", input=data))

    ok(c.fs("mv", "/mv/old", "/mv/new"))
    assert ls_names(c, "/mv") == ["/mv/new", "/mv/target"]
    assert sha256(ok(c.fs("cat", "/mv/new")).stdout) == sha256(data)

    ok(c.fs("mv", "/mv/new", "/mv/target"))  # into a directory, keeping its name
    assert ls_names(c, "-R", "/mv") == ["/mv/target", "/mv/target/new"]
    assert sha256(ok(c.fs("cat", "/mv/target/new")).stdout) == sha256(data)

    ok(c.fs("mkdir", "/mv/other"))
    ok(c.fs("mv", "/mv/target", "/mv/other"))  # a directory moves with its contents
    assert ls_names(c, "-R", "/mv") == ["/mv/other", "/mv/other/target", "/mv/other/target/new"]


def _datanode_addresses(c: ProbeCluster, tier: str) -> set[str]:
    return {d.address for d in c.datanodes if d.tier == tier}


def test_stat_shows_size_and_block_locations(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "/st"))
    ok(c.fs("put", "-", "/st/dram", input=os.urandom(3 * MiB + 1)))
    ok(c.fs("put", "--storage-class", "flash", "-", "/st/flash", input=os.urandom(2 * MiB)))

    text = out(ok(c.fs("stat", "/st/dram")))
    assert "type: file" in text
    assert f"size: {3 * MiB + 1} bytes" in text
    assert "storage class: dram" in text
    assert "blocks: 4" in text
    locations = re.findall(r"^\s+(\d+) on (\S+) \((\w+), tcp\)$", text, re.MULTILINE)
    assert sum(int(n) for n, _, _ in locations) == 4
    assert {cls for _, _, cls in locations} == {"dram"}
    assert {addr for _, addr, _ in locations} <= _datanode_addresses(c, "dram")

    text = out(ok(c.fs("stat", "/st/flash")))
    assert "storage class: flash" in text and "blocks: 2" in text
    locations = re.findall(r"^\s+(\d+) on (\S+) \((\w+), nvmf\)$", text, re.MULTILINE)
    assert [(int(n), addr, cls) for n, addr, cls in locations] == [
        (2, *_datanode_addresses(c, "nvmf"), "flash")]


def test_du(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "-p", "/du/sub"))
    ok(c.fs("put", "-", "/du/a", input=b"a" * 1000))
    ok(c.fs("put", "-", "/du/sub/b", input=b"b" * (2 * MiB)))
    assert out(ok(c.fs("du", "/du"))).split() == [str(1000 + 2 * MiB), "/du"]
    assert out(ok(c.fs("du", "/du/a", "/du/sub"))).splitlines() == [
        "1000\t/du/a", f"{2 * MiB}\t/du/sub"]
    assert out(ok(c.fs("du", "-h", "/du/sub"))).split() == ["2.0", "MiB", "/du/sub"]


def test_df_shows_classes_and_datanodes(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    text = out(ok(c.fs("df")))
    rows = [line.split() for line in text.splitlines() if line.strip()]
    classes = {r[0]: r for r in rows if r[0] in ("dram", "flash", "inline")}
    assert classes["dram"][1:3] == ["64.0", "MiB"]  # 2 x 32 MiB
    assert classes["flash"][1:3] == ["64.0", "MiB"]
    assert classes["inline"][1:3] == ["128.0", "MiB"]  # the namenode's, for small objects
    by_address = {r[1]: r for r in rows if len(r) > 2 and r[0].isdigit()}
    assert set(by_address) == {d.address for d in c.datanodes}
    for d in c.datanodes:
        row = by_address[d.address]
        assert row[2] == ("flash" if d.tier == "nvmf" else "dram")
        transport = "nvmf" if d.tier == "nvmf" else "tcp"
        assert row[3] == "up" and row[4] == transport and row[5] == transport  # offered, used


# ---- addresses ----

def test_crail_urls_name_the_namenode(shared_cluster: ProbeCluster, tmp_path: Path) -> None:
    c = shared_cluster
    data = os.urandom(MiB + 17)
    (tmp_path / "f").write_bytes(data)
    # No --namenode: the address comes from the path.
    assert ok(run_cli("fs", "mkdir", "-p", c.url("/url/dir"))).returncode == 0
    ok(run_cli("fs", "put", str(tmp_path / "f"), c.url("/url/dir/f")))
    assert ok(run_cli("fs", "cat", c.url("/url/dir/f"))).stdout == data
    assert out(ok(run_cli("fs", "ls", c.url("/url/dir")))).splitlines() == ["/url/dir/f"]
    assert f"size: {len(data)} bytes" in out(ok(run_cli("fs", "stat", c.url("/url/dir/f"))))
    ok(run_cli("fs", "get", c.url("/url/dir/f"), str(tmp_path / "g")))
    assert (tmp_path / "g").read_bytes() == data
    ok(run_cli("fs", "mv", c.url("/url/dir/f"), c.url("/url/dir/h")))
    assert ls_names(c, "/url/dir") == ["/url/dir/h"]
    assert out(ok(run_cli("fs", "du", c.url("/url")))).split() == [str(len(data)), "/url"]
    # With --namenode pointing elsewhere, the path's own address wins.
    ok(run_cli("fs", "--namenode", f"127.0.0.1:{unused_port()}", "mkdir", c.url("/url2")))
    assert ls_names(c, "/url2") == []


def test_rm_with_crail_url(shared_cluster: ProbeCluster, tmp_path: Path) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "-p", "/rmurl/dir"))
    ok(c.fs("put", "-", "/rmurl/dir/f", input=b"x"))
    # The configured namenode is one that is not running, so that a command that talks
    # to it instead of the one in the path cannot touch anybody's data.
    conf = tmp_path / "elsewhere.toml"
    conf.write_text(f'[namenode]\naddress = "127.0.0.1:{unused_port()}"\n')
    ok(run_cli("--conf", str(conf), "fs", "ls", c.url("/rmurl")))  # other commands manage
    ok(run_cli("--conf", str(conf), "fs", "rm", c.url("/rmurl/dir/f")))
    ok(run_cli("--conf", str(conf), "fs", "rm", "-r", c.url("/rmurl")))
    assert "no such file" in one_line_error(c.fs("stat", "/rmurl"))


def test_mv_refuses_two_namenodes(shared_cluster: ProbeCluster) -> None:
    c = shared_cluster
    ok(c.fs("put", "-", "/twonn-src", input=b"payload"))
    other = f"crail://127.0.0.1:{unused_port()}/twonn-src"
    result = run_cli("fs", "mv", other, c.url("/twonn-dst"))
    # The source named a namenode that is not this one: nothing here may move.
    assert ls_names(c, "/twonn-src") == ["/twonn-src"]
    line = one_line_error(result)
    assert "same namenode" in line


def test_get_directory_copies_its_multifiles(shared_cluster: ProbeCluster, tmp_path: Path) -> None:
    c = shared_cluster
    ok(c.fs("mkdir", "-p", "/withmf"))
    ok(c.fs("put", "-", "/withmf/plain", input=b"plain"))
    ok(c.fs("mkdir", "--multifile", "/withmf/shuffle"))
    with c.connect() as store, store.append_part("/withmf/shuffle") as w:
        w.write(b"part bytes")
    ok(c.fs("get", "/withmf", str(tmp_path / "copy")))
    copied = sorted(p.name for p in (tmp_path / "copy").iterdir())
    assert copied == ["plain", "shuffle"]
    assert (tmp_path / "copy" / "shuffle").read_bytes() == b"part bytes"


# ---- bad input: one line on stderr, non-zero exit, no traceback ----

BAD_FS_COMMANDS = {
    "get-missing": (["get", "/no/such/file"], "no such file"),
    "get-missing-to-file": (["get", "/no/such/file", "{tmp}/out"], "no such file"),
    "cat-missing": (["cat", "/no/such/file"], "no such file"),
    "stat-missing": (["stat", "/no/such/file"], "no such file"),
    "rm-missing": (["rm", "/no/such/file"], "no such file"),
    "mv-missing": (["mv", "/no/such/file", "/elsewhere"], "no such file"),
    "ls-missing": (["ls", "/no/such/dir"], "no such file"),
    "relative-ls": (["ls", "relative/path"], "absolute"),
    "relative-put": (["put", "-", "relative"], "absolute"),
    "relative-get": (["get", "relative", "-"], "absolute"),
    "put-missing-local": (["put", "{tmp}/not-there", "/x"], "not-there"),
    "get-dir-to-stdout": (["get", "/", "-"], "directory"),
    "bad-storage-class": (["put", "--storage-class", "tape", "-", "/bad-class"], "tape"),
}


@pytest.mark.parametrize("case", sorted(BAD_FS_COMMANDS))
def test_bad_fs_input_is_one_line(shared_cluster: ProbeCluster, tmp_path: Path, case: str) -> None:
    args, expected = BAD_FS_COMMANDS[case]
    args = [a.format(tmp=tmp_path) for a in args]
    result = shared_cluster.fs(*args, input=b"stdin bytes", timeout=30)
    line = one_line_error(result)
    assert expected in line.lower(), line
    assert result.stdout == b""


def test_unreachable_namenode_is_one_line(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{unused_port()}"
    for args in (["fs", "--namenode", nowhere, "ls", "/"],
                 ["fs", "--namenode", nowhere, "put", "-", "/x"],
                 ["fs", "get", f"crail://{nowhere}/x", str(tmp_path / "x")],
                 ["iobench", "--namenode", nowhere, "-s", "4KiB", "-k", "2"]):
        result = run_cli(*args, input=b"data", timeout=30)
        line = one_line_error(result)
        assert nowhere in line and "namenode" in line, (args, line)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("size", ["12XB", "-5", "lots", "1.5MiB"])
def test_iobench_bad_size_is_one_line(shared_cluster: ProbeCluster, size: str) -> None:
    result = run_cli("iobench", "--namenode", shared_cluster.address, "-s", size, "-k", "2",
                     timeout=30)
    assert "size" in one_line_error(result)


# ---- iobench ----

@pytest.mark.parametrize("size,count,nbytes", [("4KiB", 20, 4096), ("2MiB", 4, 2 * MiB)])
def test_iobench_reports_every_test(shared_cluster: ProbeCluster, size: str, count: int,
                                    nbytes: int) -> None:
    c = shared_cluster
    result = ok(run_cli("iobench", "--namenode", c.address, "-s", size, "-k", str(count),
                        "-f", f"/iobench-{size}", timeout=60))
    lines = out(result).splitlines()
    tests = [line.split()[0] for line in lines]
    assert tests == ["write", "readSequential", "readRandom", "createFile", "getFile"]
    for line in lines:
        fields = re.search(r"ops\s+(\d+)\s+bytes\s+(\d+).*latency us p50 (\d+) p90 (\d+) "
                           r"p99 (\d+) max (\d+)", line)
        assert fields, line
        ops, moved = int(fields.group(1)), int(fields.group(2))
        assert ops == count
        moves_data = line.split()[0] in ("write", "readSequential", "readRandom")
        assert moved == (count * nbytes if moves_data else 0), line
        p50, p90, p99, worst = (int(fields.group(i)) for i in range(3, 7))
        assert 0 < p50 <= p90 <= p99 <= worst
    # `all` cleans up after itself.
    assert "no such file" in one_line_error(c.fs("stat", f"/iobench-{size}"))


def test_rdma_info_says_whether_rdma_can_be_used_here() -> None:
    text = out(ok(run_cli("rdma", "info")))  # tests/rdma checks the device listing on SoftRoCE
    assert re.search(r"^crailpy rdma transport: (usable|not usable: .+)$", text, re.MULTILINE)
