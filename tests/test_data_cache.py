"""The MNIST cache: downloads from a local HTTP server, offline imports, and config resolution.

No test touches the network or the user's real cache: ``MEMSPICE_DATA`` points into
``tmp_path``, downloads come from a server on 127.0.0.1, and the pinned digests are replaced by
those of small IDX files the tests make.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from memspice import data_cache
from memspice.cli import main
from memspice.errors import DataError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_sky130.toml"


def _idx(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(">u1").tobytes()


def _make_set(n_images: int) -> dict[str, bytes]:
    """Raw IDX bytes of small synthetic train and t10k sets (28×28 images, labels 0–9)."""
    rng = np.random.default_rng(1)
    files = {}
    for split, n in (("train", n_images + 3), ("t10k", n_images)):
        files[f"{split}-images-idx3-ubyte"] = _idx(rng.integers(0, 256, (n, 28, 28)))
        files[f"{split}-labels-idx1-ubyte"] = _idx(np.arange(n) % 10)
    return files


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Synthetic MNIST: published ``.gz`` files in ``tmp_path/served`` whose digests are pinned.

    Returns the raw bytes by name. The cache is ``tmp_path/cache/mnist``.
    """
    raw = _make_set(20)
    served = tmp_path / "served"
    served.mkdir()
    pinned = []
    for idx in data_cache.MNIST_FILES:
        gz = gzip.compress(raw[idx.name], mtime=0)
        (served / f"{idx.name}.gz").write_bytes(gz)
        pinned.append(data_cache.IdxFile(idx.name, len(gz), hashlib.sha256(gz).hexdigest(),
                                         hashlib.sha256(raw[idx.name]).hexdigest()))
    monkeypatch.setattr(data_cache, "MNIST_FILES", tuple(pinned))
    monkeypatch.setenv(data_cache.DATA_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data_cache.MNIST_ENV, raising=False)
    return raw


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``served``; ``/bad/NAME`` flips a byte, ``/short/NAME`` stops half-way."""

    requests: list[str]

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        kind, _, name = self.path.lstrip("/").partition("/")
        path = Path(self.directory) / name
        if kind not in ("ok", "bad", "short") or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "bad":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        elif kind == "short":
            body = body[: len(body) // 2]
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server(tmp_path, fake_mnist):
    """Base URL of a local server for ``tmp_path/served``, and the list of requested paths."""
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(tmp_path / "served")))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _cache_files(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache" / "mnist"
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_download_fills_the_cache_once(tmp_path, server, capsys):
    url, requests = server
    assert main(["data", "mnist", "--url", f"{url}/ok/"]) == 0
    out = capsys.readouterr().out
    assert f"MNIST cache: {tmp_path / 'cache' / 'mnist'} (complete splits: t10k, train)" in out
    assert _cache_files(tmp_path) == sorted(f"{f.name}.gz" for f in data_cache.MNIST_FILES)
    assert len(requests) == 4
    assert main(["data", "mnist", "--url", f"{url}/ok/", "-q"]) == 0  # nothing left to fetch
    assert len(requests) == 4
    assert capsys.readouterr().out.strip() == str(tmp_path / "cache" / "mnist")
    assert main(["data", "mnist", "--check"]) == 0
    (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["data", "mnist", "--check"]) == 2
    err = capsys.readouterr().err
    assert "is not the published t10k-labels-idx1-ubyte" in err and "delete it" in err


def test_download_falls_back_to_the_next_mirror(tmp_path, server):
    url, requests = server
    status = data_cache.download(mirrors=(f"{url}/missing/", f"{url}/ok/"), splits=("t10k",))
    assert status.splits == ("t10k",)
    assert status.missing == ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    assert [r.split("/")[1] for r in requests] == ["missing", "ok", "missing", "ok"]


@pytest.mark.parametrize("kind, message", [("bad", "checksum mismatch"), ("short", "incomplete|IncompleteRead")])
def test_a_corrupt_or_truncated_download_leaves_nothing(tmp_path, server, capsys, kind, message):
    url, _ = server
    assert main(["data", "mnist", "--split", "t10k", "--url", f"{url}/{kind}/"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memspice: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert _cache_files(tmp_path) == []  # no partial or unverified file, no temporary left


def test_import_from_a_folder_with_only_the_test_set(tmp_path, fake_mnist, capsys):
    local = tmp_path / "local"
    local.mkdir()
    # one file compressed differently from the published one, one never compressed
    (local / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(fake_mnist["t10k-images-idx3-ubyte"], 9, mtime=7))
    (local / "t10k-labels-idx1-ubyte").write_bytes(fake_mnist["t10k-labels-idx1-ubyte"])
    assert main(["data", "mnist", "--from", str(local)]) == 0
    out = capsys.readouterr().out
    assert "complete splits: t10k)" in out
    assert "missing: train-images-idx3-ubyte, train-labels-idx1-ubyte" in out
    assert _cache_files(tmp_path) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"]
    assert data_cache.resolve_mnist_dir() == tmp_path / "cache" / "mnist"


def test_import_refuses_a_wrong_file_and_copies_nothing(tmp_path, fake_mnist, capsys):
    local = tmp_path / "local"
    local.mkdir()
    (local / "t10k-labels-idx1-ubyte").write_bytes(fake_mnist["t10k-labels-idx1-ubyte"])
    (local / "t10k-images-idx3-ubyte").write_bytes(fake_mnist["train-images-idx3-ubyte"])
    assert main(["data", "mnist", "--from", str(local)]) == 2
    err = capsys.readouterr().err
    assert "is not the published t10k-images-idx3-ubyte" in err and err.count("\n") == 1
    assert _cache_files(tmp_path) == []
    assert main(["data", "mnist", "--from", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_empty_cache_says_how_to_fill_it(tmp_path, fake_mnist):
    with pytest.raises(DataError, match="memspice data mnist"):
        data_cache.resolve_mnist_dir()
    from memspice.datasets import load_dataset

    with pytest.raises(DataError, match="--from DIR"):
        load_dataset("mnist")


def test_explicit_folder_and_environment_win_over_the_cache(tmp_path, fake_mnist, monkeypatch):
    assert data_cache.resolve_mnist_dir(tmp_path / "given") == tmp_path / "given"
    with pytest.raises(DataError, match="does not exist"):
        data_cache.require_mnist_dir(tmp_path / "given")
    (tmp_path / "given").mkdir()
    with pytest.raises(DataError, match="holds no MNIST images and labels"):
        data_cache.require_mnist_dir(tmp_path / "given")
    monkeypatch.setenv(data_cache.MNIST_ENV, str(tmp_path / "env"))
    assert data_cache.resolve_mnist_dir() == tmp_path / "env"


def test_platform_cache_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(data_cache.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data_cache.sys, "platform", "linux")
    assert data_cache.mnist_cache_dir() == tmp_path / "xdg" / "memspice" / "mnist"


def test_example_config_resolves_after_an_offline_import(tmp_path, monkeypatch, capsys):
    """A fresh cache plus `memspice data mnist --from DIR` (t10k files only) is all the example needs."""
    raw = _make_set(10000)
    pinned = tuple(
        data_cache.IdxFile(f.name, f.gz_bytes, f.gz_sha256, hashlib.sha256(raw[f.name]).hexdigest())
        for f in data_cache.MNIST_FILES
    )
    monkeypatch.setattr(data_cache, "MNIST_FILES", pinned)
    monkeypatch.setenv(data_cache.DATA_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data_cache.MNIST_ENV, raising=False)
    local = tmp_path / "t10k-only"
    local.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (local / name).write_bytes(raw[name])

    from memspice.pipeline.config import load_config
    from memspice.pipeline.data import split_dataset

    config = load_config(EXAMPLE)
    assert config.dataset.name == "mnist" and config.dataset.mnist_dir == ""
    with pytest.raises(DataError, match="no MNIST files in the cache"):
        split_dataset(config)
    # `memspice run` says so before its first stage, and leaves no run directory behind
    assert main(["run", str(EXAMPLE), "--run-dir", str(tmp_path / "run"), "-q"]) == 2
    assert "memspice data mnist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["data", "mnist", "--from", str(local), "-q"]) == 0
    train, test = split_dataset(config)
    assert (len(train.labels), len(test.labels), train.n_features) == (8000, 2000, 196)
    assert np.array_equal(test.labels, np.arange(8000, 10000) % 10)
