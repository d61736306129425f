"""Hub environment and reachability: set the variables before any Hugging Face library reads them, and decide
quickly whether the hub (or its mirror) answers, instead of letting every download retry for half a minute."""
from __future__ import annotations

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


def resolve_endpoint(mirror: str | None, env: MutableMapping[str, str]) -> str:
    """Endpoint to use: the `mirror` argument (a URL or a short name), else HF_ENDPOINT, else huggingface.co."""
    if mirror:
        url = MIRRORS.get(mirror, mirror)
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"mirror={mirror!r} is neither a URL nor one of {sorted(MIRRORS)}. "
                "Pass e.g. mirror='hf-mirror' or mirror='https://hf-mirror.com'."
            )
        return url.rstrip("/")
    return env.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


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


def hub_reachable(endpoint: str = DEFAULT_ENDPOINT, timeout: float = 1.0) -> bool:
    """Ask `endpoint` for a small page; True on any HTTP answer, False on no answer within about `timeout` s."""
    result: list[bool] = []

    def ask() -> None:
        request = urllib.request.Request(endpoint.rstrip("/") + PROBE_PATH, method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=timeout).close()
            result.append(True)
        except urllib.error.HTTPError:
            result.append(True)  # the server answered, just not with 200
        except (OSError, ValueError):
            result.append(False)

    # A thread bounds the whole probe: urlopen's timeout does not cover a hanging DNS lookup.
    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])
