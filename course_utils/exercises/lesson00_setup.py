"""Checks for lesson 00's exercises."""

from __future__ import annotations

import os
from pathlib import Path

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr


def check_endpoint() -> bool:
    """Pass when huggingface_hub really uses the endpoint in HF_ENDPOINT (i.e. it was set before the import)."""
    from huggingface_hub import constants

    wanted = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    used = constants.ENDPOINT.rstrip("/")
    return verdict(
        used == wanted,
        tr("huggingface_hub uses {used}, as HF_ENDPOINT says.", used=used),
        tr(
            "HF_ENDPOINT is {wanted} but huggingface_hub uses {used}: it was imported before the variable was set. "
            "Restart the kernel and call course_utils.setup(...) in the first cell.",
            wanted=wanted,
            used=used,
        ),
    )


def check_cache_folder(repo_id: str, answer: str | os.PathLike | None) -> bool:
    """Pass when `answer` is the folder where the hub cache keeps `repo_id` (a model repo)."""
    from huggingface_hub import constants

    if answer is None:
        return not_attempted(tr("the cache folder of {repo_id}", repo_id=repo_id))
    expected = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    given = Path(answer).expanduser()
    if given == expected:
        return verdict(True, tr("{repo_id} is cached in {expected}", repo_id=repo_id, expected=expected), "")
    hint = tr("the owner and name are joined with '--' and prefixed with 'models--'")
    if given.parent != expected.parent:
        hint = tr("the cache root is {root} (constants.HF_HUB_CACHE)", root=expected.parent)
    return verdict(False, "", tr("{given} is not it: {hint}.", given=given, hint=hint))
