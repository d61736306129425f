"""Checks for lesson 00's exercises."""

from __future__ import annotations

import os
from pathlib import Path

from course_utils.exercises import not_attempted, verdict


def check_endpoint() -> bool:
    """Pass when huggingface_hub really uses the endpoint in HF_ENDPOINT (i.e. it was set before the import)."""
    from huggingface_hub import constants

    wanted = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    used = constants.ENDPOINT.rstrip("/")
    return verdict(
        used == wanted,
        f"huggingface_hub uses {used}, as HF_ENDPOINT says.",
        f"HF_ENDPOINT is {wanted} but huggingface_hub uses {used}: it was imported before the variable was set. "
        "Restart the kernel and call course_utils.setup(...) in the first cell.",
    )


def check_cache_folder(repo_id: str, answer: str | os.PathLike | None) -> bool:
    """Pass when `answer` is the folder where the hub cache keeps `repo_id` (a model repo)."""
    from huggingface_hub import constants

    if answer is None:
        return not_attempted(f"the cache folder of {repo_id}")
    expected = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    given = Path(answer).expanduser()
    if given == expected:
        return verdict(True, f"{repo_id} is cached in {expected}", "")
    hint = "the owner and name are joined with '--' and prefixed with 'models--'"
    if given.parent != expected.parent:
        hint = f"the cache root is {expected.parent} (constants.HF_HUB_CACHE)"
    return verdict(False, "", f"{given} is not it: {hint}.")
