"""The hub environment is configured before import, and the reachability probe decides fast."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

from course_utils import hub


def test_mirror_short_name_sets_endpoint_and_timeouts():
    env: dict[str, str] = {}
    chosen = hub.configure_hub_env("hf-mirror", env=env)
    assert env["HF_ENDPOINT"] == "https://hf-mirror.com" == chosen["HF_ENDPOINT"]
    assert float(env["HF_HUB_ETAG_TIMEOUT"]) >= 10 and float(env["HF_HUB_DOWNLOAD_TIMEOUT"]) >= 10


def test_existing_env_is_respected():
    env = {"HF_ENDPOINT": "https://example.org/", "HF_HUB_ETAG_TIMEOUT": "99", "HF_HOME": "/somewhere"}
    hub.configure_hub_env(None, env=env)
    assert env["HF_ENDPOINT"] == "https://example.org"
    assert env["HF_HUB_ETAG_TIMEOUT"] == "99" and env["HF_HOME"] == "/somewhere"


def test_autodl_data_disk_becomes_hf_home(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "AUTODL_DATA_DISK", tmp_path)
    env: dict[str, str] = {}
    hub.configure_hub_env(None, env=env)
    assert Path(env["HF_HOME"]).parent == tmp_path


def test_no_data_disk_leaves_hf_home_unset(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "AUTODL_DATA_DISK", tmp_path / "absent")
    env: dict[str, str] = {}
    hub.configure_hub_env(None, env=env)
    assert "HF_HOME" not in env


def test_bad_mirror_is_explained():
    with pytest.raises(ValueError, match="mirror='hf-mirror'"):
        hub.configure_hub_env("hf_mirorr", env={})


def test_warns_when_huggingface_hub_was_imported_with_another_endpoint():
    import huggingface_hub.constants  # noqa: F401  (already imported by then in a notebook that forgot setup())

    with pytest.warns(UserWarning, match="Restart the kernel"):
        hub.warn_if_imported_too_early("https://hf-mirror.example")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hub.warn_if_imported_too_early(huggingface_hub.constants.ENDPOINT)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_refused_connection_is_fast_and_false():
    start = time.perf_counter()
    assert hub.hub_reachable(f"http://127.0.0.1:{_closed_port()}", timeout=1.0) is False
    assert time.perf_counter() - start < 2.0


def test_probe_silent_server_times_out_within_two_seconds():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection but never answers
    try:
        start = time.perf_counter()
        assert hub.hub_reachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0) is False
        assert time.perf_counter() - start <= 2.0
    finally:
        silent.close()


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_HEAD(self):  # noqa: N802
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [200, 401])
def test_probe_any_http_answer_means_reachable(status):
    handler = type("H", (_Answer,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert hub.hub_reachable(f"http://127.0.0.1:{server.server_port}", timeout=1.0) is True
    finally:
        server.shutdown()


def test_probe_of_the_real_endpoint_decides_within_two_seconds():
    """With no network (this machine, CI) it says False; with network, True. Either way, quickly."""
    start = time.perf_counter()
    hub.hub_reachable(hub.DEFAULT_ENDPOINT, timeout=1.0)
    assert time.perf_counter() - start <= 2.0


def test_offline_flag(monkeypatch):
    assert hub.offline_requested({"HF_HUB_OFFLINE": "1"}) is True
    assert hub.offline_requested({"HF_HUB_OFFLINE": "0"}) is False
    assert hub.offline_requested({}) is False


class _HeadOnly(_Answer):
    """Answers HEAD at once but never answers GET: a mirror that cannot serve a single file."""

    def do_GET(self):  # noqa: N802
        time.sleep(5)


@pytest.mark.parametrize("handler, expected", [(_HeadOnly, False), (type("E", (_Answer,), {"status": 503}), False)])
def test_probe_needs_a_get_answer_below_500(handler, expected):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.perf_counter()
        ok, why = hub.probe(f"http://127.0.0.1:{server.server_port}", timeout=1.0)
        assert ok is expected and time.perf_counter() - start <= 2.0
        assert ("within 1 s" in why) if handler is _HeadOnly else ("503 (server error)" in why)
    finally:
        server.shutdown()


@pytest.mark.parametrize("endpoint", ["hf-mirror.com", "https://", "mirror=123", "ftp://x.org", " "])
def test_malformed_hf_endpoint_is_not_a_url(endpoint):
    with pytest.raises(ValueError, match="HF_ENDPOINT=.* is not a URL"):
        hub.configure_hub_env(None, env={"HF_ENDPOINT": endpoint})


@pytest.mark.parametrize("mirror", ["https://", 123, "http:/x"])
def test_malformed_mirror_argument_is_not_a_url(mirror):
    with pytest.raises(ValueError, match="mirror=.* is (not a URL|neither a URL)"):
        hub.configure_hub_env(mirror, env={})


def test_bounded_client_fills_only_missing_timeouts(monkeypatch):
    import httpx2 as httpx

    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "7")
    client = hub.bounded_client()
    unbounded = client.build_request("GET", "http://127.0.0.1/", timeout=None)
    for hook in client.event_hooks["request"]:
        hook(unbounded) if hook is hub._fill_missing_timeouts else None
    expected = {"connect": 3.0, "read": 7.0, "write": 7.0, "pool": 7.0}
    assert unbounded.extensions["timeout"] == expected
    chosen = client.build_request("GET", "http://127.0.0.1/", timeout=httpx.Timeout(1.0))
    hub._fill_missing_timeouts(chosen)
    assert chosen.extensions["timeout"]["read"] == 1.0


def test_probe_of_a_server_that_does_not_speak_http_says_so():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        connection, _ = listener.accept()
        connection.recv(1000)
        connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        start = time.perf_counter()
        ok, why = hub.probe(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)
        assert not ok and "not HTTP" in why and time.perf_counter() - start < 1.0
    finally:
        listener.close()
