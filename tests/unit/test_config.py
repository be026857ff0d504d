"""Configuration: conf/crailpy.toml documents exactly the built-in defaults; overrides apply in order."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from crailpy import config
from crailpy.errors import InvalidArgument

CONF = Path(__file__).parents[2] / "conf" / "crailpy.toml"


def test_default_file_documents_every_key_with_its_default() -> None:
    text = CONF.read_text()
    documented = tomllib.loads(text)
    defaults = config.Config()
    loaded = config.load(CONF)
    for section in defaults._fields:
        values = getattr(defaults, section)
        assert set(documented[section]) == set(values._fields), section
        assert getattr(loaded, section) == values, section
    # every key has a comment line above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#") or "=" in lines[i - 1], line


def test_crailpy_conf_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[namenode]\nblock_size = "64KiB"\naddress = "10.0.0.1:1"\n'
                    '[client]\ninflight = 3\n')
    monkeypatch.setenv("CRAILPY_CONF", str(conf))
    cfg = config.load()
    assert cfg.namenode.block_size == 65536 and cfg.client.inflight == 3
    assert cfg.datanode.capacity == 256 << 20  # untouched keys keep their defaults
    cfg = cfg.override("namenode", address="127.0.0.1:7000", block_size=None)
    assert cfg.namenode.address == "127.0.0.1:7000" and cfg.namenode.block_size == 65536


@pytest.mark.parametrize("text, match", [
    ("[nope]\nx = 1\n", "unknown section"),
    ("[client]\nwhat = 1\n", "unknown key"),
    ("[count]\nx = 1\n", "unknown section"),
    ('[namenode]\nstorage_classes = "dram"\n', "list of names"),
    ('[datanode]\nprefault = "yes"\n', "true or false"),
    ("[client\n", "not valid TOML"),
    ('[datanode]\ncapacity = "lots"\n', "not a size"),
])
def test_bad_files_are_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    with pytest.raises(InvalidArgument, match=match):
        config.load(conf)


def test_missing_file() -> None:
    with pytest.raises(InvalidArgument, match="cannot read"):
        config.load("/nonexistent/crailpy.toml")


@pytest.mark.parametrize("text, value", [("4096", 4096), ("64KiB", 65536), ("1 MiB", 1 << 20),
                                         ("2g", 2 << 30), (7, 7)])
def test_sizes(text: str, value: int) -> None:
    assert config.parse_size(text) == value
