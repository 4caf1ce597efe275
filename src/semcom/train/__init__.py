"""Training: a generic resumable/DDP engine and the tasks that use it (JSCC codecs).

See :mod:`semcom.train.engine` (``Task``, ``TrainConfig``, ``Trainer``),
:mod:`semcom.train.jscc` (``JSCCConfig``, ``JSCCTask``) and :mod:`semcom.train.cli`
(``semcom train jscc``).
"""

from .engine import ResumableSampler, Task, TrainConfig, Trainer
from .jscc import JSCCConfig, JSCCTask

__all__ = ["JSCCConfig", "JSCCTask", "ResumableSampler", "Task", "TrainConfig", "Trainer"]
