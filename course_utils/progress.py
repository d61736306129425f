"""Progress bars: keep the ones that tell the learner how long to wait, hide the ones that only add clutter."""

from __future__ import annotations


def hide_loading_bars() -> None:
    """Hide diffusers' "Loading pipeline components" and transformers' "Loading weights" bars, which flash by for
    models already on disk, while keeping huggingface_hub's download bars (hours-long downloads need them)."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    downloads_hidden = are_progress_bars_disabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()  # this also switches the hub's download bars off...
    if not downloads_hidden:
        enable_progress_bars()  # ...so switch them back on, unless HF_HUB_DISABLE_PROGRESS_BARS asked for that
