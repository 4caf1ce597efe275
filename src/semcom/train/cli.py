"""``semcom train ...`` subcommands (wired into :mod:`semcom.cli` by :func:`add_train_parser`).

Also runnable on its own (handy under ``torchrun``)::

    python -m semcom.train.cli train jscc --model deepjscc --cbr 1/6 --out runs/x
    torchrun --nproc_per_node=2 -m semcom.cli train jscc ...   # as the run's card records it
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..devices import command_args, launch_command
from ..names import CHANNELS, CSI_MODES, JSCC_MODELS, LOSSES, RESUME_FREE, SCHEDULES, dataset_name
from ..paths import json_text


def _val_data_arg(text: str) -> str:
    """``--val-data``: as ``--data``, or one of its words (``auto``, ``none``, a fraction)."""
    try:
        float(text)
        return text
    except ValueError:
        return text if text in ("auto", "none") else dataset_name(text)


#: options naming a data set (every command) and how their values are read and recorded: a
#: folder of images by its absolute path, so a resume or a re-run of the recorded command from
#: another working directory opens it (:func:`~semcom.data.dataset_name`)
DATA_OPTIONS = {
    "--dataset": dataset_name,
    "--in-data": dataset_name,
    "--out-data": dataset_name,
    "--data": dataset_name,
    "--val-data": _val_data_arg,
    "--test-data": dataset_name,
}


def canonical_data_words(argv: Sequence[str]) -> list[str]:
    """``argv`` with each data-set value as it is read (:data:`DATA_OPTIONS`): the command a
    file or card records names a folder by its absolute path, as its data-set block does, so
    ``reproduce`` and ``--resume`` from elsewhere open the same images."""
    out = list(argv)
    for i, word in enumerate(out):
        opt, eq, value = word.partition("=")
        norm = DATA_OPTIONS.get(opt)
        if norm is None:
            continue
        if eq:
            out[i] = f"{opt}={norm(value)}"
        elif i + 1 < len(out) and not out[i + 1].startswith("--"):
            out[i + 1] = norm(out[i + 1])
    return out


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` (with sub-subcommand ``jscc``) to a ``semcom`` subparsers object."""
    t = subparsers.add_parser("train", help="train models (jscc, denoiser, snr-estimator)")
    tsub = t.add_subparsers(
        dest="train_command", required=True, metavar="{jscc,denoiser,snr-estimator}"
    )
    j = tsub.add_parser(
        "jscc",
        help="train DeepJSCC / ADJSCC on the differentiable link",
        description="Train a DeepJSCC/ADJSCC codec through the same path as 'semcom eval' "
        "(per-image power normalisation, channel, MMSE equaliser). A training SNR range: "
        "--snr-train -5:20 (uniform per image). DDP: torchrun --nproc_per_node=N "
        "-m semcom.cli train jscc ...",
    )
    j.add_argument("--model", default="deepjscc", choices=list(JSCC_MODELS), help="JSCC codec")
    j.add_argument("--cbr", default="1/6", help="CBR, c = 96*CBR channels (1/6, 1/12, 1/16)")
    j.add_argument(
        "--width", type=int, default=None, help="hidden width (default: that of --init, else 64)"
    )
    j.add_argument("--channel", default="awgn", choices=CHANNELS, help="training channel")
    j.add_argument("--csi", default="perfect", choices=CSI_MODES, help="receiver CSI in training")
    j.add_argument(
        "--snr-train", default="10", help="training SNR in dB, or a range lo:hi (uniform per image)"
    )
    j.add_argument("--val-snr", type=float, nargs="+", default=None, help="validation SNRs (dB)")
    j.add_argument(
        "--data", default="cifar10-train", type=dataset_name,
        help="named training data set, or a folder of images",
    )  # fmt: skip
    j.add_argument(
        "--crop",
        type=int,
        default=None,
        help="random training crop in image pixels (refused when no training image holds it "
        "whole; smaller images are padded, with a warning)",
    )
    j.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    j.add_argument(
        "--val-data",
        default="auto",
        type=_val_data_arg,
        help="named data set, a folder of images, a held-out fraction of --data (0.02), "
        "'auto' or 'none'",
    )
    j.add_argument("--val-crop", type=int, default=None, help="centre crop for validation")
    j.add_argument("--val-limit", type=int, default=1000, help="max validation images")
    j.add_argument("--limit", type=int, default=None, help="train on N random images")
    j.add_argument(
        "--repeats", type=int, default=1,
        help="random crops of every training image per epoch (longer epochs for a GPU)",
    )  # fmt: skip
    j.add_argument(
        "--cache-images", action="store_true",
        help="decode the images in use once and keep them in memory (12 bytes per pixel; "
        "the same items, faster loading: for a GPU that waits on its data)",
    )  # fmt: skip
    j.add_argument(
        "--init",
        default=None,
        help="start from a zoo name or a checkpoint (for --model adjscc also a deepjscc: "
        "a function-preserving warm start)",
    )
    j.add_argument(
        "--behind-dm",
        action="store_true",
        help="train only the decoder, behind the diffusion receiver (encoder from --init, "
        "frozen; the CDDM recipe): the decoder of the X+dm scheme",
    )
    j.add_argument(
        "--denoiser", default=None, help="--behind-dm: denoiser checkpoint (default: shipped)"
    )
    j.add_argument("--dm-steps", type=int, default=1, help="--behind-dm: receiver steps K")
    j.add_argument(
        "--loss", choices=LOSSES, default="mse",
        help="mse (default) or psnr: minus the mean per-image PSNR (weighs every training SNR "
        "alike in dB)",
    )  # fmt: skip
    j.add_argument("--epochs", type=int, default=10, help="passes over the training data")
    _add_trainer_args(j, batch_size=64)
    j.set_defaults(func=cmd_train_jscc)

    d = tsub.add_parser(
        "denoiser",
        help="train the latent diffusion denoiser on clean latents of a frozen codec",
        description="Train the x0-predicting latent U-Net over all noise levels of an SNR "
        "range (one network for every SNR). Latents are encoded once and cached.",
    )
    _add_latent_task_args(d, width=64, epochs=20, width_help="U-Net base width")
    _add_trainer_args(d, batch_size=16)
    d.set_defaults(func=cmd_train_denoiser)

    e = tsub.add_parser(
        "snr-estimator",
        help="train the learned pilot-free SNR estimator (paper B eq. 21) on clean latents",
        description="Train a small residual CNN that reads the SNR off the normalised received "
        "latent (no pilots, no noise power). Used by --snr-source learned.",
    )
    _add_latent_task_args(e, width=32, epochs=10, width_help="CNN width")
    e.add_argument(
        "--calibrate",
        default=None,
        metavar="RUN",
        help="calibration stage: keep the CNN of this estimator (run folder, file or zoo name) "
        "and fit a new standardised head on whole training latents (--crop is then unused)",
    )
    e.add_argument("--draws", type=int, default=2, help="noisy copies per latent (--calibrate)")
    e.add_argument("--head-depth", type=int, default=1, help="hidden layers of the head")
    e.add_argument("--head-width", type=int, default=0, help="their width (0: --width)")
    e.add_argument(
        "--scale-stats",
        action="store_true",
        help="the head also reads the latent's power kept by 2/4/8/16-pixel block means "
        "(longer-range structure than the CNN sees; helps at -10 dB)",
    )
    _add_trainer_args(e, batch_size=32)
    e.set_defaults(func=cmd_train_snr_estimator)
    return t


def _add_latent_task_args(
    p: argparse.ArgumentParser, width: int, epochs: int, width_help: str
) -> None:
    """Options of the tasks trained on cached clean latents of a frozen codec."""
    p.add_argument("--codec", default="vae", help="vae (TAEF2) or a zoo codec: deepjscc, adjscc")
    p.add_argument("--cbr", default=None, help="CBR of the zoo codec (e.g. 1/16)")
    p.add_argument(
        "--codec-weights",
        default=None,
        metavar="REF",
        help="deepjscc/adjscc: this checkpoint (zoo name, run folder or .safetensors) instead of "
        "the shipped one for --cbr (a codec you trained; eval it with --codec REF)",
    )
    p.add_argument(
        "--data", default="bsds500-train", type=dataset_name,
        help="named training data set, or a folder of images",
    )  # fmt: skip
    p.add_argument(
        "--val-data", default="bsds500-val", type=_val_data_arg,
        help="named validation data set, a folder of images, or none",
    )  # fmt: skip
    p.add_argument(
        "--crop",
        type=int,
        default=16,
        help="random training crop in latent pixels (image pixels / the codec's downsampling: "
        "8 for vae, 4 for deepjscc/adjscc; 256x256 image crops of TAEF2 are --crop 32)",
    )
    p.add_argument("--repeats", type=int, default=8, help="crops per latent per epoch")
    p.add_argument("--snr-range", default="-20:40", help="training SNR range lo:hi in dB")
    p.add_argument(
        "--encode-snr",
        type=float,
        nargs="+",
        default=None,
        help="SNR-adaptive codecs (adjscc): encode every image at each of these SNRs in dB "
        "(default: the codec's training range in 5 dB steps)",
    )
    p.add_argument("--width", type=int, default=width, help=width_help)
    p.add_argument("--epochs", type=int, default=epochs, help="passes over the training data")


def _latent_task_config(cls, args: argparse.Namespace):
    """The task config dataclass ``cls`` filled from :func:`_add_latent_task_args` options."""
    from .jscc import parse_snr_train

    lo, hi = parse_snr_train(args.snr_range)
    return cls(
        codec=args.codec,
        cbr=args.cbr,
        data=args.data,
        val_data=args.val_data,
        crop=args.crop,
        repeats=args.repeats,
        snr_range=(lo, hi),
        encode_snrs=args.encode_snr,
        codec_weights=args.codec_weights,
        width=args.width,
        seed=args.seed,
    )


def _add_trainer_args(p: argparse.ArgumentParser, batch_size: int) -> None:
    """Options of the generic :class:`~semcom.train.engine.Trainer` (shared by all tasks)."""
    p.add_argument("--batch-size", type=int, default=batch_size, help="per process")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--schedule", default="cosine", choices=SCHEDULES, help="learning-rate schedule")
    p.add_argument("--warmup", type=int, default=0, help="warm-up iterations (cosine)")
    p.add_argument(
        "--min-lr-ratio", type=float, default=0.0, help="cosine: final LR as a fraction of --lr"
    )
    p.add_argument(
        "--step-size", type=int, default=0, help="step: iterations per decay (0: a third)"
    )
    p.add_argument("--gamma", type=float, default=0.1, help="step: LR factor at each decay")
    p.add_argument(
        "--grad-clip", type=float, default=0.0, help="clip the gradient's L2 norm (0: off)"
    )
    p.add_argument("--val-batch-size", type=int, default=64, help="images per validation batch")
    p.add_argument(
        "--val-every", type=int, default=1, metavar="N",
        help="validate every N epochs (and always after the last, and at the epoch end where "
        "--max-steps stops the run; a stop mid-epoch is not validated; default 1: every epoch)",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the initialisation, data order and noise"
    )
    p.add_argument("--out", default=None, help="run folder (default: the --resume folder)")
    p.add_argument("--resume", default=None, help="continue the run in this folder")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N steps in total")
    p.add_argument("--ckpt-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads per process (0: torch's own choice)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


#: options whose value may be a negative SNR range (``-5:20``), which argparse takes for an
#: option unless written with ``=``
_RANGE_OPTIONS = ("--snr-train", "--snr-range")
_NEGATIVE_RANGE = re.compile(r"-\d[\d.]*(:-?\d[\d.]*)?")


def join_range_values(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--snr-train -5:20`` written as ``--snr-train=-5:20`` (also
    ``--snr-range``), which is what argparse needs for a value that starts with ``-``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if argv[i] in _RANGE_OPTIONS and _NEGATIVE_RANGE.fullmatch(value):
            out.append(f"{argv[i]}={value}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``; for ``train ... --resume RUN`` the run's own options
    (:func:`resume_argv`) come first. ``args.argv`` is ``argv`` as given (the command the
    card records), with ``--snr-train -5:20`` joined as ``--snr-train=-5:20``
    (:func:`join_range_values`) and data sets as they are read (:func:`canonical_data_words`);
    a metric named twice in ``--metrics`` counts once."""
    argv = join_range_values(argv)
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "train" and args.resume:
        full = resume_argv(argv, args.train_command, args.resume, parser)
        args = parser.parse_args(full) if full is not None else args
    if isinstance(getattr(args, "metrics", None), list):  # each metric once (one column)
        args.metrics = list(dict.fromkeys(args.metrics))
    args.argv = canonical_data_words(argv)
    return args


#: card keys (``config`` and ``train`` blocks) whose option has another destination; the
#: ``True`` ones are switches that say the opposite (``flip`` False is ``--no-flip``)
_CARD_DESTS = {
    "warmup_steps": ("warmup", False),
    "num_workers": ("workers", False),
    "val_snrs": ("val_snr", False),
    "encode_snrs": ("encode_snr", False),
    "flip": ("no_flip", True),
    "progress": ("quiet", True),
}
#: card keys that are not options of the run (``out``: the folder given now) or say how one
#: invocation ran, not the run (the device, threads, workers, progress bar, image cache: a
#: resume on another machine must not inherit ``--device cuda``, nor ``--quiet`` for good)
_CARD_SKIP = {
    "out", "command", "extra", "resume",
    "device", "threads", "num_workers", "progress", "cache_images",
}  # fmt: skip


def _flag(key: str) -> tuple[str, bool]:
    """The command-line flag of card key ``key`` and whether it says the opposite."""
    dest, negated = _CARD_DESTS.get(key, (key, False))
    return "--" + dest.replace("_", "-"), negated


def _task_parser(parser: argparse.ArgumentParser, task: str) -> argparse.ArgumentParser | None:
    """The parser of ``train TASK`` inside the ``semcom`` parser (None if it has none)."""
    for name in ("train", task):
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or name not in sub.choices:
            return None
        parser = sub.choices[name]
    return parser


def card_options(card: dict, parser: argparse.ArgumentParser) -> list[str]:
    """The options of the ``train TASK`` ``parser`` that rebuild the run of ``card``: its
    ``config`` and ``train`` blocks, which hold what the run's last checkpoint was trained with
    (the options of its start, as changed by each ``--resume`` since), as command-line words.
    A value the card leaves unset (None) keeps the option's default (None too). Not carried:
    how one invocation ran (:data:`_CARD_SKIP`: device, threads, ...) and a ``--max-steps``
    the run has reached (the limit of an earlier invocation, served: a resume given a larger
    ``--epochs`` trains on)."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    words: list[str] = []
    for section in ("config", "train"):
        block = card.get(section)
        for key, value in block.items() if isinstance(block, dict) else ():
            dest, negated = _CARD_DESTS.get(key, (key, False))
            action = actions.get(dest)
            if key in _CARD_SKIP or action is None or value is None:
                continue
            if key == "max_steps" and int(card.get("step", 0)) >= int(value):
                continue
            flag = action.option_strings[-1]
            if action.nargs == 0:  # a switch (store_true)
                if bool(value) != negated:
                    words.append(flag)
                continue
            if key == "snr_range" and isinstance(value, list | tuple):
                value = ":".join(str(v) for v in value)
            if isinstance(value, list | tuple):
                if value:  # nargs="+": the values follow as words ("-5" reads as a number)
                    words += [flag, *(str(v) for v in value)]
                continue
            text = str(value)
            words += [f"{flag}={text}"] if text.startswith("-") else [flag, text]
    return words


def resume_argv(
    argv: Sequence[str], task: str, run: str, parser: argparse.ArgumentParser
) -> list[str] | None:
    """The arguments that resume ``run``: the options its last checkpoint was trained with
    (:func:`card_options`, from its ``card.json``: those of the command that started it as
    changed by every ``--resume`` since, also for a run started from Python) followed by
    ``argv`` (the ones given now, ``train TASK ... --resume RUN``), so options given now
    override the run's own (argparse keeps the last value) and everything else comes from the
    checkpoint. None when the card is missing or unreadable (:func:`_check_resume` then says
    why)."""
    try:
        card = json.loads((Path(run) / "card.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or not isinstance(card.get("config"), dict):
        return None
    words = command_args(card.get("command") or "") or []
    started = card.get("task") or (words[1] if words[:1] == ["train"] and len(words) > 1 else None)
    if started and started != task:
        raise ValueError(f"cannot resume: {str(run)!r} is a 'train {started}' run, not {task!r}")
    sub = _task_parser(parser, task)
    if sub is None:
        return None
    argv = list(argv)  # [..., "train", task, *given]
    i = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == ["train", task]) + 2
    return [*argv[:i], *card_options(card, sub), *argv[i:]]


def _check_resume(run: Path, config: dict, train: dict, options: set[str] | None = None) -> None:
    """Refuse to resume ``run`` with a task ``config`` or ``train`` config that differs from its
    card's in an option that may not change. ``options``: the destinations of the command's
    options (a card value no option sets came from a run started from Python)."""
    card_path = run / "card.json"
    if not card_path.is_file():
        raise ValueError(f"cannot resume: {str(card_path)!r} not found")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"cannot resume: corrupt {str(card_path)!r}: {e}") from e
    diffs = []
    for section, mine in (("config", config), ("train", train)):
        theirs = card.get(section, {})
        for k, v in json.loads(json_text(mine)).items():  # as the card stores it (tuples: lists)
            # None: a default the task resolved when the run started (e.g. encode_snrs)
            if k in RESUME_FREE or k not in theirs or v is None:
                continue
            if theirs[k] == v:
                continue
            flag, negated = _flag(k)
            if options is not None and flag[2:].replace("-", "_") not in options:
                how = (
                    "it was trained from Python with" if not card.get("command") else "its card has"
                )
                raise ValueError(
                    f"cannot resume {str(run)!r} from the command line: {how} {section} "
                    f"{k}={theirs[k]!r}, which no option of 'semcom train' sets; resume it "
                    f"from Python: Trainer(task, TrainConfig(...)).fit(resume={str(run)!r}) with "
                    "the task config of its card"
                )
            old, now = (not theirs[k], not v) if negated else (theirs[k], v)
            diff = f"{flag}: checkpoint {old!r}, now {now!r}"
            if diff not in diffs:  # seed is in both sections
                diffs.append(diff)
    want, ref = card.get("init_sha256"), config.get("calibrate")
    if want and ref:  # the frozen CNN a calibration trains its head on must be the same
        from ..zoo import resolve_weights, sha256_file

        try:
            have = sha256_file(resolve_weights(ref))
        except (ValueError, OSError):
            have = None
        if have != want:
            raise ValueError(
                f"cannot resume from {str(run)!r}: --calibrate {ref!r} is no longer the "
                f"checkpoint it started from (sha256 {want[:12]}, now "
                f"{have[:12] if have else 'missing'}); its head was fitted on that CNN's "
                "features: start a new run"
            )
    if diffs:
        raise ValueError(
            f"cannot resume from {str(run)!r}, options differ: " + "; ".join(diffs) + ". "
            "--resume reads the run's options from its card: give only those that may change "
            "(--epochs, --max-steps, --threads, --device, --ckpt-every, --val-every, --workers, "
            "--cache-images, --quiet, --out)"
        )


def cmd_train_jscc(args: argparse.Namespace) -> int:
    """Run ``semcom train jscc`` (returns the exit code)."""
    from dataclasses import asdict

    from ..codecs.jscc import DEFAULT_WIDTH
    from .jscc import JSCCConfig, JSCCTask

    width = args.width
    if width is None and args.init:  # the architecture of the checkpoint it starts from
        width = _init_width(args.init)
    config = JSCCConfig(
        model=args.model,
        cbr=args.cbr,
        width=DEFAULT_WIDTH if width is None else width,
        channel=args.channel,
        csi=args.csi,
        snr_train=args.snr_train,
        data=args.data,
        crop=args.crop,
        flip=not args.no_flip,
        val_data=args.val_data,
        val_crop=args.val_crop,
        val_limit=args.val_limit,
        val_snrs=list(args.val_snr or []),
        limit=args.limit,
        repeats=args.repeats,
        cache_images=args.cache_images,
        seed=args.seed,
        init=args.init,
        behind_dm=args.behind_dm,
        denoiser=args.denoiser,
        dm_steps=args.dm_steps,
        loss=args.loss,
    )
    return _fit(JSCCTask(config), asdict(config), args)


def _init_width(ref: str) -> int | None:
    """The hidden width of the JSCC codec ``--init`` names (None when it cannot be read: the
    task then says why)."""
    from ..codecs.jscc import load_jscc
    from ..zoo import resolve_weights

    try:
        return int(load_jscc(resolve_weights(ref)).width)
    except (ValueError, OSError):
        return None


def _fit(task, config: dict, args: argparse.Namespace) -> int:
    """Build the :class:`TrainConfig` from the common options, check --resume, train."""
    from dataclasses import asdict

    from .engine import TrainConfig, Trainer

    out = args.out or args.resume
    if out is None:
        raise ValueError("give --out DIR (or --resume DIR)")
    argv = getattr(args, "argv", None) or sys.argv[1:]  # `semcom.cli.main` sets args.argv
    tcfg = TrainConfig(
        out=out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup_steps=args.warmup,
        min_lr_ratio=args.min_lr_ratio,
        step_size=args.step_size,
        gamma=args.gamma,
        grad_clip=args.grad_clip,
        val_batch_size=args.val_batch_size,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
        max_steps=args.max_steps,
        ckpt_every=args.ckpt_every,
        num_workers=args.workers,
        progress=not args.quiet,
        threads=args.threads,
        command=launch_command(argv) if argv and argv[0] == "train" else shlex.join(argv),
    )
    if args.resume:
        if not Path(args.resume).is_dir():
            raise ValueError(f"--resume {args.resume!r} is not a run folder")
        _check_resume(Path(args.resume), config, asdict(tcfg), set(vars(args)))
    trainer = Trainer(task, tcfg)
    try:
        metrics = trainer.fit(resume=args.resume)
    except FileNotFoundError as e:  # semcom.cli reports ValueErrors as one line, exit 2
        if type(e) is not FileNotFoundError:
            raise
        raise ValueError(str(e)) from e
    if args.resume and not (Path(out) / "card.json").is_file():
        out = args.resume  # nothing was left to train: the run stays where it was (no --out)
    # the run's folder and final validation metrics (none with --val-data none): always a line,
    # one under torchrun (rank 0's: the other ranks do not validate)
    if trainer.is_main:
        print(json_text({"out": str(out), **(metrics or {})}))
    return 0


def cmd_train_denoiser(args: argparse.Namespace) -> int:
    """Run ``semcom train denoiser`` (returns the exit code)."""
    from dataclasses import asdict

    from .denoiser import DenoiserTask, DenoiserTaskConfig

    config = _latent_task_config(DenoiserTaskConfig, args)
    return _fit(DenoiserTask(config), asdict(config), args)


def cmd_train_snr_estimator(args: argparse.Namespace) -> int:
    """Run ``semcom train snr-estimator`` (returns the exit code)."""
    from dataclasses import asdict

    from .snr_estimator import SNREstimatorTask, SNREstimatorTaskConfig

    config = _latent_task_config(SNREstimatorTaskConfig, args)
    config.calibrate, config.draws = args.calibrate, args.draws
    config.head_depth, config.head_width = args.head_depth, args.head_width
    config.scale_stats = args.scale_stats
    return _fit(SNREstimatorTask(config), asdict(config), args)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m semcom.train.cli train jscc ...`` (the ``semcom``
    command itself: same parser, same error handling)."""
    from ..cli import main as semcom_main

    return semcom_main(argv)


if __name__ == "__main__":
    sys.exit(main())
