"""Training: a generic resumable/DDP engine and the tasks that use it (JSCC codecs).

See :mod:`semcom.train.engine` (``Task``, ``TrainConfig``, ``Trainer``; its data loading in
:mod:`semcom.train.loading`, ``ResumableSampler``),
:mod:`semcom.train.jscc` (``JSCCConfig``, ``JSCCTask``) and :mod:`semcom.train.cli`
(``semcom train jscc``).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .engine import Task, TrainConfig, Trainer
    from .jscc import JSCCConfig, JSCCTask
    from .loading import ResumableSampler

__all__ = ["JSCCConfig", "JSCCTask", "ResumableSampler", "Task", "TrainConfig", "Trainer"]

# imported on first use: the parser reads train.cli without torch
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "engine": ("Task", "TrainConfig", "Trainer"),
        "jscc": ("JSCCConfig", "JSCCTask"),
        "loading": ("ResumableSampler",),
    },
)
