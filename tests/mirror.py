"""A real hub mirror for the tests: olah (the self-hosted mirror behind sites like hf-mirror.com)
serving local git repositories offline, and a proxy in front of it that stalls, cuts files or
answers 5xx, which olah itself cannot do.

olah lives in its own virtual environment (build/olah-venv, made by `make olah`), because its
dependencies pin versions the course's environment cannot use; set OLAH_CLI to use another olah-cli.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
OLAH_CLI = Path(os.environ.get("OLAH_CLI", REPO_ROOT / "build" / "olah-venv" / "bin" / "olah-cli"))
# Files stored through LFS on the real hub: weights and data, never configs.
LFS_SUFFIXES = (".safetensors", ".bin", ".parquet", ".ckpt")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "course tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "course tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _git(folder: Path, *args: str) -> None:
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)


def _lfs_pointer(data: bytes, git_dir: Path) -> bytes:
    """Store `data` as an LFS object inside `git_dir` and return the pointer file that git commits
    instead."""
    digest = hashlib.sha256(data).hexdigest()
    target = git_dir / "lfs" / "objects" / digest[:2] / digest[2:4] / digest
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {len(data)}\n").encode()


def git_repo(folder: Path, files: dict[str, bytes]) -> Path:
    """A git repository on branch main holding `files`; weights and parquet as LFS pointers plus LFS
    objects."""
    folder.mkdir(parents=True)
    _git(folder, "init", "-q", "-b", "main")
    attributes = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
    files = {".gitattributes": attributes.encode(), **files}
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lfs = name.endswith(LFS_SUFFIXES)
        path.write_bytes(_lfs_pointer(data, folder / ".git") if lfs else data)
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "upload")
    return folder


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` as {relative posix path: bytes}."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Mirror:
    """A running olah mirror: its URL, the folder it serves repos from, and the process to stop."""

    url: str
    root: Path
    process: subprocess.Popen | None = None
    repos: list[str] = field(default_factory=list)

    def add(self, repo_type: str, repo_id: str, files: dict[str, bytes]) -> None:
        """Serve `files` as `repo_id` (repo_type 'models' or 'datasets'); call before start()."""
        git_repo(self.root / "mirrors" / repo_type / repo_id, files)
        # Offline olah answers 401 to GET /api/<type>/<id> (no revision) unless this cached head
        # exists.
        meta = self.root / "repos" / "api" / repo_type / repo_id / "revision" / "main" / "meta_head.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"sha": "main", "lastModified": "2025-01-01T00:00:00.000Z"}))
        self.repos.append(f"{repo_type}/{repo_id}")

    def add_branch(self, repo_type: str, repo_id: str, branch: str, files: dict[str, bytes]) -> None:
        """Add a branch holding only `files` to a repo made by add() (e.g. the hub's parquet
        conversion)."""
        folder = self.root / "mirrors" / repo_type / repo_id
        _git(folder, "checkout", "-q", "--orphan", branch)
        _git(folder, "rm", "-rfq", "--cached", ".")
        for path in folder.iterdir():
            if path.name != ".git":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        for name, data in files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_lfs_pointer(data, folder / ".git") if name.endswith(LFS_SUFFIXES) else data)
        _git(folder, "add", "-A")
        _git(folder, "commit", "-q", "-m", f"{branch} branch")
        _git(folder, "checkout", "-q", "-f", "main")


def write_config(root: Path, port: int) -> Path:
    """olah's TOML configuration: local repos only (offline), on 127.0.0.1:`port`."""
    config = root / "olah.toml"
    config.write_text(
        "[basic]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'repos-path = "{root / "repos"}"\n'
        f'mirrors-path = ["{root / "mirrors"}"]\n'
        "[accessibility]\n"
        "offline = true\n"
    )
    return config


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def start(mirror: Mirror, timeout: float = 60.0, attempts: int = 3) -> Mirror:
    """Start olah for `mirror` and wait until it serves the first repo (its '/' answers 500, so ask
    a repo). Test runs in parallel each start their own olah: if another process took the free port
    before olah could bind it, olah exits and the next attempt takes another port."""
    if not OLAH_CLI.exists():
        raise FileNotFoundError(f"olah-cli not found at {OLAH_CLI}: run `make olah` (or set OLAH_CLI).")
    for attempt in range(attempts):
        if _start_on(mirror, free_port(), timeout):
            return mirror
        log = (mirror.root / "olah.log").read_text(errors="replace")
        if "address already in use" not in log.lower() or attempt == attempts - 1:
            raise RuntimeError(f"olah did not start: {log[-2000:]}")
    raise AssertionError("unreachable")


def _start_on(mirror: Mirror, port: int, timeout: float) -> bool:
    """Start olah on `port`; True once this process (not another one on the same port) serves the first repo."""
    config = write_config(mirror.root, port)
    with open(mirror.root / "olah.log", "wb") as log:
        mirror.process = subprocess.Popen(
            [str(OLAH_CLI), "-c", str(config)],
            cwd=mirror.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    mirror.url = f"http://127.0.0.1:{port}"
    repo_type, repo_id = mirror.repos[0].split("/", 1)
    deadline = time.monotonic() + timeout
    while not _answers(f"{mirror.url}/api/{repo_type}/{repo_id}/revision/main"):
        if mirror.process.poll() is not None or time.monotonic() > deadline:
            stop(mirror)
            return False
        time.sleep(0.2)
    time.sleep(0.5)  # an olah that failed to bind exits at once, while another process answered on its port
    if mirror.process.poll() is not None:
        return False
    return True


def stop(mirror: Mirror) -> None:
    """Stop olah (and the workers it started) by its process group id."""
    process = mirror.process
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


FLOWERS = "huggan/flowers-102-categories"
FLOWERS_CARD = b"---\nlicense: other\ntask_categories:\n- image-classification\n---\n# flowers (test copy)\n"


def course_mirror(root: Path, models_dir: Path, parquet: bytes) -> Mirror:
    """The course's own models and a flowers-like parquet dataset, served under the hub ids the
    course uses."""
    mirror = Mirror("", root)
    mirror.add("models", "google/ddpm-cat-256", folder_files(models_dir / "emoji-ddpm"))
    mirror.add(
        "models",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        folder_files(models_dir / "emoji-sd"),
    )
    mirror.add(
        "datasets",
        FLOWERS,
        {"README.md": FLOWERS_CARD, "data/train-00000-of-00001.parquet": parquet},
    )
    mirror.add_branch("datasets", FLOWERS, "parquet", {"default/train/0000.parquet": parquet})
    return start(mirror)


def flowers_parquet(images: list[Path]) -> bytes:
    """A parquet file laid out like huggan/flowers-102-categories: one 'image' column with the PNG
    bytes."""
    import io

    from datasets import Dataset, Image

    rows = {"image": [{"bytes": p.read_bytes(), "path": None} for p in images]}
    buffer = io.BytesIO()
    Dataset.from_dict(rows).cast_column("image", Image()).to_parquet(buffer)
    return buffer.getvalue()


def hub_env(endpoint: str, hf_home: Path, **env: str) -> dict[str, str | None]:
    """What a fresh Python needs to use the mirror at `endpoint`, in full mode, with short timeouts; `env` on top.
    HF_HUB_OFFLINE is None: remove it (make test sets it)."""
    return {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "COURSE_MODE": "full",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": None,
        **env,
    }


def start_python(code: str, endpoint: str, hf_home: Path, **env: str) -> subprocess.Popen:
    """Start `code` in a fresh Python (libraries read HF_ENDPOINT at import) against `endpoint`, full mode; collect
    it with finish_python. Several can run side by side."""
    import sys

    full_env = {**os.environ, **hub_env(endpoint, hf_home, **env)}
    full_env = {key: value for key, value in full_env.items() if value is not None}
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    process.started = time.monotonic()
    return process


def finish_python(process: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    """Wait for a start_python process (killed after `timeout` s); its result, with `.seconds` since the start."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    result.seconds = time.monotonic() - process.started
    return result


def ok(result: subprocess.CompletedProcess) -> str:
    """The stdout of a finished run, after checking that it exited with 0 (else its output's end is the message)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def run_python(code: str, endpoint: str, hf_home: Path, timeout: float = 120, **env: str):
    """Run `code` in a fresh Python against `endpoint` (see start_python) and wait for it."""
    return finish_python(start_python(code, endpoint, hf_home, **env), timeout)


# --------------------------------------------------------------------------------------------------
# A faulty mirror: a proxy in front of olah that misbehaves the way real mirrors do (olah answers
# every request in full and ignores Range, so it cannot stall, cut or fail by itself), and serves
# refs/convert/parquet (olah resolves plain branch names only; the git repo keeps that branch as
# "parquet").
# --------------------------------------------------------------------------------------------------
REWRITES = {"refs%2Fconvert%2Fparquet": "parquet", "refs/convert/parquet": "parquet"}
HOP_HEADERS = {"connection", "transfer-encoding", "keep-alive", "host"}


class FaultyHandler(BaseHTTPRequestHandler):
    """Forwards to `server.upstream`, except as `server.behaviour` says: 'pass', 'stall',
    'stall-files', 'cut' (the first `server.faults` file downloads stop half-way) or '5xx'."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_HEAD(self) -> None:
        self._forward("HEAD")

    def do_GET(self) -> None:
        self._forward("GET")

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in HOP_HEADERS and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()

    def _forward(self, method: str) -> None:
        server, path = self.server, self.path
        for old, new in REWRITES.items():
            path = path.replace(old, new)
        is_file = "/resolve/" in path and method == "GET"
        server.requests.append(f"{method} {path}")
        if server.behaviour == "5xx":
            body = b'{"error": "upstream unavailable"}'
            self._send(503, [("Content-Type", "application/json")], body)
            self.wfile.write(body if method == "GET" else b"")
            return
        if method == "GET" and (server.behaviour == "stall" or (server.behaviour == "stall-files" and is_file)):
            server.release.wait(600)  # answers nothing until the test ends
            self.close_connection = True
            return
        status, headers, body = _upstream(server.upstream, method, path, self.headers)
        if server.behaviour == "cut" and is_file and server.faults > 0 and len(body) > 1000:
            server.faults -= 1
            self._send(status, headers, body, len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        upstream_length = dict((k.lower(), v) for k, v in headers).get("content-length", len(body))
        self._send(status, headers, body, len(body) if method == "GET" else int(upstream_length))
        if method == "GET":
            self.wfile.write(body)


def _upstream(url: str, method: str, path: str, headers) -> tuple[int, list[tuple[str, str]], bytes]:
    """The upstream's full answer to one request."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    sent = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
    connection.request(method, path, headers=sent)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response.getheaders(), body


@contextmanager
def faulty_mirror(upstream: str, behaviour: str = "pass", faults: int = 0) -> Iterator[ThreadingHTTPServer]:
    """Run a FaultyHandler proxy to `upstream` in a thread; yields the server with `.url`; stopped
    on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultyHandler)
    server.daemon_threads = True
    server.upstream, server.behaviour, server.faults = upstream, behaviour, faults
    server.release, server.requests = threading.Event(), []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
