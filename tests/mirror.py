"""A real hub mirror for the tests: olah (the self-hosted mirror behind sites like hf-mirror.com) serving local git
repositories offline, plus three small broken servers (stalls, cut connections, 5xx) that olah cannot imitate.

olah lives in its own virtual environment (build/olah-venv, made by `make olah`), because its dependencies pin
versions the course's environment cannot use; set OLAH_CLI to use another olah-cli."""
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
import urllib.error
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
    "GIT_AUTHOR_NAME": "course tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "course tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
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
    """Store `data` as an LFS object inside `git_dir` and return the pointer file that git commits instead."""
    digest = hashlib.sha256(data).hexdigest()
    target = git_dir / "lfs" / "objects" / digest[:2] / digest[2:4] / digest
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {len(data)}\n").encode()


def git_repo(folder: Path, files: dict[str, bytes]) -> Path:
    """A git repository on branch main holding `files`; weights and parquet as LFS pointers plus LFS objects."""
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
        # Offline olah answers 401 to GET /api/<type>/<id> (no revision) unless this cached head exists.
        meta = self.root / "repos" / "api" / repo_type / repo_id / "revision" / "main" / "meta_head.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"sha": "main", "lastModified": "2025-01-01T00:00:00.000Z"}))
        self.repos.append(f"{repo_type}/{repo_id}")


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


def start(mirror: Mirror, timeout: float = 60.0) -> Mirror:
    """Start olah for `mirror` and wait until it serves the first repo (its '/' answers 500, so ask a repo)."""
    if not OLAH_CLI.exists():
        raise FileNotFoundError(f"olah-cli not found at {OLAH_CLI}: run `make olah` (or set OLAH_CLI).")
    port = free_port()
    config = write_config(mirror.root, port)
    log = open(mirror.root / "olah.log", "wb")
    mirror.process = subprocess.Popen([str(OLAH_CLI), "-c", str(config)], cwd=mirror.root, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    mirror.url = f"http://127.0.0.1:{port}"
    repo_type, repo_id = mirror.repos[0].split("/", 1)
    deadline = time.monotonic() + timeout
    while not _answers(f"{mirror.url}/api/{repo_type}/{repo_id}/revision/main"):
        if mirror.process.poll() is not None or time.monotonic() > deadline:
            stop(mirror)
            raise RuntimeError(f"olah did not start: {(mirror.root / 'olah.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return mirror


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


def course_mirror(root: Path, models_dir: Path, parquet: bytes) -> Mirror:
    """The course's own models and a flowers-like parquet dataset, served under the hub ids the course uses."""
    mirror = Mirror("", root)
    mirror.add("models", "google/ddpm-cat-256", folder_files(models_dir / "emoji-ddpm"))
    mirror.add("models", "stable-diffusion-v1-5/stable-diffusion-v1-5", folder_files(models_dir / "emoji-sd"))
    mirror.add("datasets", "huggan/flowers-102-categories",
               {"README.md": b"---\nlicense: other\n---\nflowers\n",
                "data/train-00000-of-00001.parquet": parquet})
    return start(mirror)


# ----------------------------------------------------------------------------------------------------------------
# Broken mirrors: what olah cannot do (it answers every request in full, and ignores Range)
# ----------------------------------------------------------------------------------------------------------------
class BrokenHandler(BaseHTTPRequestHandler):
    """A hub-like server that misbehaves as `server.behaviour` says: 'stall', 'cut' or '5xx'."""

    protocol_version = "HTTP/1.1"
    body = b"x" * 200_000

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _head(self, status: int = 200, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body) if length is None else length))
        self.send_header("ETag", '"abc"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.end_headers()

    def do_HEAD(self) -> None:
        self._head(503 if self.server.behaviour == "5xx" else 200)

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        self.server.gets += 1
        if behaviour == "5xx":
            self._head(503, 0)
        elif behaviour == "stall":
            self.server.release.wait(120)  # never answers until the test ends
        elif behaviour == "cut":
            self._head()
            self.wfile.write(self.body[:1000])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


@contextmanager
def broken_server(behaviour: str) -> Iterator[ThreadingHTTPServer]:
    """Run a BrokenHandler server in a thread; yields it with `.url` set; stopped on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenHandler)
    server.daemon_threads = True
    server.behaviour, server.gets, server.release = behaviour, 0, threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def copy_tree(source: Path, target: Path) -> Path:
    """A copy of `source` at `target` (for tests that must not change shipped files)."""
    shutil.copytree(source, target)
    return target
