"""Progress bars and import-time warnings: keep what tells the learner how long to wait, hide what only adds
clutter."""

from __future__ import annotations

import logging


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


# Harmless warnings that diffusers' first import of its quantization backends prints, by logger: torchao 0.18
# registers enums in a way torch 2.14 deprecates, diffusers 0.42 looks for torchao tensor classes that moved, and
# bitsandbytes 0.50 looks for an optional `kernels` package on a CPU. None of them affects a lesson, and they would
# appear in the first cell of every lesson that loads a model.
QUANTIZER_WARNINGS = {
    "torch.utils._pytree": "Calling register_constant() on Enum subclasses is deprecated",
    "diffusers.quantizers.torchao.torchao_quantizer": "Unable to import `torchao` Tensor objects",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}


class DropMessage(logging.Filter):
    """A logging filter that drops the records whose message contains `phrase`, and lets every other record pass."""

    def __init__(self, phrase: str) -> None:
        super().__init__()
        self.phrase = phrase

    def filter(self, record: logging.LogRecord) -> bool:
        return self.phrase not in record.getMessage()


def quiet_quantizer_warnings() -> None:
    """Drop the messages of QUANTIZER_WARNINGS, and only those: other warnings of the same loggers still show. This
    imports nothing; the filters wait on the loggers until diffusers first imports its quantizers (on the first
    model load)."""
    for name, phrase in QUANTIZER_WARNINGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.phrase == phrase for f in logger.filters):
            logger.addFilter(DropMessage(phrase))
