"""Progress bars and import-time warnings: keep what tells the learner how long to wait, hide what only adds
clutter."""

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


# Loggers that print harmless warnings when diffusers first imports its quantization backends: torchao 0.18 registers
# enums in a way torch 2.14 deprecates, diffusers 0.42 looks for torchao tensor classes that moved, and bitsandbytes
# 0.50 looks for an optional `kernels` package on a CPU. None of them affects a lesson, and they would appear in the
# first diffusers cell of every lesson.
QUANTIZER_LOGGERS = (
    "torch.utils._pytree",
    "diffusers.quantizers.torchao.torchao_quantizer",
    "bitsandbytes.backends.cpu.ops",
)


def quiet_quantizer_imports() -> None:
    """Import diffusers' torchao quantizer (and with it torchao, and bitsandbytes where installed) once, with the
    loggers of QUANTIZER_LOGGERS at ERROR; later imports are cached, so the lessons' cells stay clean."""
    import importlib
    import importlib.util
    import logging

    if importlib.util.find_spec("torchao") is None:
        return
    loggers = [logging.getLogger(name) for name in QUANTIZER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        importlib.import_module("diffusers.quantizers.torchao.torchao_quantizer")
        if importlib.util.find_spec("bitsandbytes") is not None:
            importlib.import_module("bitsandbytes")
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
