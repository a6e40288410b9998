"""Weight loading: paths and URLs, hash checks, and clear errors for wrong files."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import threading

import pytest
import torch
from torch import nn

from circuits_vision.models.loading import (
    INCEPTIONV1_ENV,
    WeightsError,
    cache_dir,
    inceptionv1_weights_from_env,
    load_weights,
)


def small_model(seed: int) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(generator=generator)
    return model


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture
def saved(tmp_path):
    source = small_model(seed=1)
    path = tmp_path / "small.pth"
    torch.save(source.state_dict(), path)
    return source, path


def test_good_file_loads_and_sha256_is_checked(saved):
    source, path = saved
    target = small_model(seed=2)
    assert not weights_equal(source, target)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_weights(target, path, sha256=digest) is target
    assert weights_equal(source, target)
    with pytest.raises(WeightsError, match="SHA-256 of weights file .*small.pth.* expected 0000"):
        load_weights(small_model(seed=2), str(path), sha256="0" * 64)


def test_checkpoint_wrapping_a_state_dict_is_unwrapped(saved, tmp_path):
    source, _ = saved
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    target = load_weights(small_model(seed=2), tmp_path / "ckpt.pth")
    assert weights_equal(source, target)


def test_truncated_file_names_the_file(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    target = small_model(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError, match=r"could not read weights file '.*small\.pth'.*truncated"):
        load_weights(target, path)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_non_torch_file_and_non_state_dict(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match=r"could not read weights file '.*notes\.txt'"):
        load_weights(small_model(seed=0), text)
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        load_weights(small_model(seed=0), tmp_path / "list.pth")
    torch.save({"0.weight": torch.zeros(2), "step": 7}, tmp_path / "mixed.pth")
    with pytest.raises(WeightsError, match="not tensors: step"):
        load_weights(small_model(seed=0), tmp_path / "mixed.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(small_model(seed=0), tmp_path / "missing.pth")


def test_missing_unexpected_and_wrongly_shaped_keys_are_listed(saved, tmp_path):
    source, _ = saved
    state = source.state_dict()
    del state["2.bias"]
    state["extra.weight"] = torch.zeros(5, 1)
    state["0.weight"] = torch.zeros(5, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    target = small_model(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_weights(target, path)
    message = str(info.value)
    assert "bad.pth" in message and "does not fit Sequential" in message
    assert "missing keys (1): 2.bias [2]" in message
    assert "unexpected keys (1): extra.weight [5, 1]" in message
    assert "wrongly shaped keys (1): 0.weight: file [5, 3, 3, 3], model [4, 3, 3, 3]" in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing loaded


def test_long_key_lists_are_cut_short():
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(30)])
    with pytest.raises(WeightsError, match=r"missing keys \(60\): .*\.\.\. and 40 more"):
        load_weights(model, {})


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory):
    """A throw-away HTTP server for ``directory`` on 127.0.0.1; yields (base URL, list of request paths)."""
    requests: list[str] = []
    handler = functools.partial(type("Handler", (_QuietHandler,), {"requests": requests}), directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_url_download_is_cached_and_hash_checked(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    source, path = saved
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    served = tmp_path / "served"
    served.mkdir()
    (served / "small.pth").write_bytes(path.read_bytes())
    (served / f"small-{digest[:10]}.pth").write_bytes(path.read_bytes())
    (served / "small-deadbeef00.pth").write_bytes(path.read_bytes())
    (served / "truncated.pth").write_bytes(path.read_bytes()[:100])
    assert str(cache_dir()).startswith(str(tmp_path))
    with serve(served) as (base, requests):
        with pytest.raises(WeightsError, match=f"SHA-256 of the file downloaded from {base}/small.pth is {digest}"):
            load_weights(small_model(seed=2), f"{base}/small.pth", sha256="f" * 64)
        assert not (cache_dir() / "small.pth").exists()
        assert [p for p in cache_dir().iterdir()] == []  # no partial file left behind

        target = load_weights(small_model(seed=2), f"{base}/small.pth", sha256=digest)
        assert weights_equal(source, target) and (cache_dir() / "small.pth").is_file()
        load_weights(small_model(seed=3), f"{base}/small.pth", sha256=digest)
        assert requests.count("/small.pth") == 2  # the failed download and the first good one, then cache

        load_weights(small_model(seed=2), f"{base}/small-{digest[:10]}.pth")  # hash prefix in the name
        with pytest.raises(WeightsError, match="expected a hash starting with deadbeef00"):
            load_weights(small_model(seed=2), f"{base}/small-deadbeef00.pth")
        with pytest.raises(WeightsError, match=r"could not read weights file '.*truncated\.pth'"):
            load_weights(small_model(seed=2), f"{base}/truncated.pth")
        with pytest.raises(WeightsError, match=f"could not download weights from {base}/nothing.pth"):
            load_weights(small_model(seed=2), f"{base}/nothing.pth")


def test_inceptionv1_weights_from_env(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTIONV1_ENV, raising=False)
    with pytest.raises(RuntimeError, match=f"set {INCEPTIONV1_ENV}"):
        inceptionv1_weights_from_env()
    monkeypatch.setenv(INCEPTIONV1_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(RuntimeError, match="is not a file"):
        inceptionv1_weights_from_env()
    (tmp_path / "inception5h.pth").write_bytes(b"x")
    monkeypatch.setenv(INCEPTIONV1_ENV, str(tmp_path / "inception5h.pth"))
    assert inceptionv1_weights_from_env() == str(tmp_path / "inception5h.pth")


def test_nan_weights_and_integer_state_dicts_are_refused(saved, tmp_path):
    source, _ = saved
    state = source.state_dict()
    state["0.weight"] = state["0.weight"].clone()
    state["0.weight"][0, 0, 0, :2] = float("nan")
    state["2.bias"] = torch.tensor([float("inf"), 0.0])
    torch.save(state, tmp_path / "nan.pth")
    target = small_model(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(
        WeightsError,
        match=r"nan\.pth' cannot be used:\n  NaN or infinite values \(2 tensors\): "
        r"0\.weight \(2 of 108 values\), 2\.bias \(1 of 2 values\); .*diverged",
    ):
        load_weights(target, tmp_path / "nan.pth")
    integers = {k: (v * 10).round().to(torch.int64) for k, v in source.state_dict().items()}
    with pytest.raises(
        WeightsError,
        match=r"integer tensors for floating-point weights \(4\): 0\.weight: file "
        r"torch\.int64, model torch\.float32",
    ):
        load_weights(target, integers)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing loaded
    doubles = {k: v.double() for k, v in source.state_dict().items()}
    assert weights_equal(source, load_weights(target, doubles))  # float64 weights are fine


class _LyingHandler(http.server.BaseHTTPRequestHandler):
    """Declares the full file's length, sends its first 1000 bytes and hangs up."""

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[:1000])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_a_short_download_is_never_cached(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    source, path = saved
    big = {**source.state_dict(), "pad": torch.zeros(20000)}  # well over 1000 bytes
    torch.save(big, path)
    handler = type("Handler", (_LyingHandler,), {"body": path.read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/short.pth"
    try:
        for _ in range(2):  # the second try downloads again instead of reusing a short file
            with pytest.raises(
                WeightsError, match=rf"download from {url} stopped after 1000 of {path.stat().st_size} bytes"
            ):
                load_weights(small_model(seed=2), url)
            assert not (cache_dir() / "short.pth").exists()
            assert list(cache_dir().iterdir()) == []  # no partial file either
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
