"""Hub environment and reachability: set the variables before any Hugging Face library reads them, and decide
quickly whether the hub (or its mirror) answers, instead of letting every download retry for half a minute."""

from __future__ import annotations

import http.client
import os
import sys
import threading
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import MutableMapping

DEFAULT_ENDPOINT = "https://huggingface.co"
MIRRORS = {"hf-mirror": "https://hf-mirror.com", "huggingface": DEFAULT_ENDPOINT}
AUTODL_DATA_DISK = Path("/root/autodl-tmp")
# Seconds; huggingface_hub's own defaults (10 s) are too short for a busy mirror when downloading multi-GB files.
TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "30", "HF_HUB_DOWNLOAD_TIMEOUT": "60"}
# A small public repo every endpoint serves; any HTTP answer (even 401/404) proves the server is there.
PROBE_PATH = "/api/models/google/ddpm-cat-256"
TRUE_VALUES = {"1", "true", "yes", "on"}


def check_url(value: object, name: str) -> str:
    """Return `value` without a trailing slash if it is an http(s) URL with a host; else raise a
    ValueError."""
    from urllib.parse import urlsplit

    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and " " not in text:
        return text.rstrip("/")
    raise ValueError(
        f"{name}={value!r} is not a URL. Expected http(s)://host, e.g. 'https://hf-mirror.com'"
        f"{' or one of ' + repr(sorted(MIRRORS)) if name == 'mirror' else ''}. "
        + (
            "Fix or unset the HF_ENDPOINT environment variable (it is read before the hub is used)."
            if name == "HF_ENDPOINT"
            else "Pass e.g. mirror='hf-mirror' or mirror='https://hf-mirror.com'."
        )
    )


def resolve_endpoint(mirror: str | None, env: MutableMapping[str, str]) -> str:
    """Endpoint to use: the `mirror` argument (a URL or a short name), else HF_ENDPOINT, else huggingface.co."""
    if mirror is not None and mirror != "":
        url = MIRRORS.get(mirror, mirror) if isinstance(mirror, str) else mirror
        if isinstance(url, str) and not url.startswith(("http://", "https://")):
            raise ValueError(
                f"mirror={mirror!r} is neither a URL nor one of {sorted(MIRRORS)}. "
                "Pass e.g. mirror='hf-mirror' or mirror='https://hf-mirror.com'."
            )
        return check_url(url, "mirror")
    return check_url(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT, "HF_ENDPOINT")


def configure_hub_env(mirror: str | None = None, env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Write endpoint, timeouts and cache folder into `env` (default os.environ); return what was set."""
    env = os.environ if env is None else env
    chosen = {"HF_ENDPOINT": resolve_endpoint(mirror, env)}
    for key, value in TIMEOUTS.items():
        chosen[key] = env.get(key, value)
    if "HF_HOME" not in env and AUTODL_DATA_DISK.is_dir():
        # AutoDL's system disk is small; the data disk survives image saves and has room for checkpoints.
        chosen["HF_HOME"] = str(AUTODL_DATA_DISK / "hf-home")
    env.update(chosen)
    if env is os.environ:
        warn_if_imported_too_early(chosen["HF_ENDPOINT"])
    return chosen


def warn_if_imported_too_early(endpoint: str) -> None:
    """huggingface_hub reads HF_ENDPOINT once, at import: warn if it was imported before setup() with another one."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and getattr(hub, "ENDPOINT", endpoint).rstrip("/") != endpoint:
        warnings.warn(
            f"huggingface_hub was imported before course_utils.setup() and still uses {hub.ENDPOINT}, "
            f"not {endpoint}. Restart the kernel and run setup() in the first cell, before importing "
            "diffusers, transformers or huggingface_hub.",
            stacklevel=3,
        )


def offline_requested(env: MutableMapping[str, str] | None = None) -> bool:
    """True when the learner asked for offline mode with HF_HUB_OFFLINE=1."""
    env = os.environ if env is None else env
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES


def probe(endpoint: str = DEFAULT_ENDPOINT, timeout: float = 1.0) -> tuple[bool, str]:
    """GET a small API page from `endpoint` and read it: (True, how) on a full answer below 500,
    else (False, why).

    A GET, not a HEAD: a mirror that answers HEAD but stalls on GET cannot serve a single file."""
    result: list[tuple[bool, str]] = []

    def ask() -> None:
        request = urllib.request.Request(endpoint.rstrip("/") + PROBE_PATH, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read(1 << 16)
            result.append((True, f"answered {response.status}"))
        except urllib.error.HTTPError as err:  # 401/404: the server is there; 5xx: it is failing
            failing = " (server error)" if err.code >= 500 else ""
            result.append((err.code < 500, f"answered {err.code}{failing}"))
        except http.client.HTTPException as err:  # bytes that are not HTTP (another service)
            result.append((False, f"answered something that is not HTTP ({type(err).__name__})"))
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError):
                result.append((False, f"no answer to GET {PROBE_PATH} within {timeout:g} s"))
            else:
                result.append((False, f"{type(reason).__name__}: {reason}"))

    # A thread bounds the whole probe: urlopen's timeout does not cover a hanging DNS lookup.
    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if not result:
        return False, f"no answer to GET {PROBE_PATH} within {timeout:g} s"
    return result[0]


def hub_reachable(endpoint: str = DEFAULT_ENDPOINT, timeout: float = 1.0) -> bool:
    """True when `endpoint` answers a GET within about `timeout` s (see probe)."""
    return probe(endpoint, timeout)[0]


def _fill_missing_timeouts(request) -> None:
    """httpx request hook: give every request huggingface_hub sends without a timeout the configured
    ones."""
    limits = request.extensions.get("timeout") or {}
    if all(limits.get(key) is not None for key in ("connect", "read", "write", "pool")):
        return
    connect = float(os.environ.get("HF_HUB_ETAG_TIMEOUT", TIMEOUTS["HF_HUB_ETAG_TIMEOUT"]))
    read = float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", TIMEOUTS["HF_HUB_DOWNLOAD_TIMEOUT"]))
    bounded = {"connect": connect, "read": read, "write": read, "pool": read}
    request.extensions["timeout"] = {k: limits.get(k) or v for k, v in bounded.items()}


def bounded_client():
    """huggingface_hub's own httpx client, except that no request may wait forever.

    huggingface_hub 2.x builds its client with timeout=None, and its API calls (repo_info, list
    files) pass no timeout: a mirror that stops answering would hang them for ever. This keeps its
    hooks and settings and adds HF_HUB_ETAG_TIMEOUT (connect) and HF_HUB_DOWNLOAD_TIMEOUT (each
    read) where a request has none."""
    from huggingface_hub.utils._http import default_client_factory

    client = default_client_factory()
    client.event_hooks["request"].append(_fill_missing_timeouts)
    return client


def bound_hub_requests() -> None:
    """Make huggingface_hub (and datasets, diffusers, transformers, which use its client) use
    bounded_client."""
    import huggingface_hub

    try:
        from huggingface_hub.utils._http import default_client_factory  # noqa: F401
    except ImportError:  # a huggingface_hub without it: keep its own client rather than break
        warnings.warn(
            "This huggingface_hub has no default_client_factory: hub requests keep its "
            "own timeouts (none for API calls).",
            stacklevel=2,
        )
        return
    huggingface_hub.set_client_factory(bounded_client)
