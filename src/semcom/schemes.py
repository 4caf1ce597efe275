"""Registry of named schemes (``vae``, ``deepjscc``, ``vae+dm``, ``jpeg+ldpc``, ...).

A scheme name plus an optional CBR selects a ready-to-use :class:`semcom.link.Scheme`.
Modules register their schemes on import (see :func:`_load_builtin`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .link import Scheme
from .names import LABELLED_OPTIONS, OPTION_FLAGS, PLUGIN_GROUP


@dataclass(frozen=True)
class SchemeSpec:
    """A registered scheme.

    Attributes:
        name: the name used on the command line.
        description: one line for ``semcom schemes``.
        factory: ``factory(cbr, device) -> Scheme``; ``cbr`` is None for the default.
        cbrs: the CBRs it offers (None: any CBR, or fixed by the codec); one CBR makes a
            fixed-CBR scheme. :func:`get_scheme` does not check a CBR against them: the
            factory refuses one it cannot build (ValueError).
        requires: human-readable requirements (weights, checkpoints) for error messages.
        options: names of keyword options the factory accepts (e.g. ``matching``, ``steps``
            for diffusion receivers); :func:`get_scheme` refuses others.
        shown_cbrs: what ``semcom schemes`` lists as its CBRs when ``cbrs`` is None but not
            every CBR works out of the box (a ``+dm`` receiver: the CBRs of shipped denoisers).
    """

    name: str
    description: str
    factory: Callable[..., Scheme]
    cbrs: tuple[float, ...] | None = None
    requires: str = ""
    options: tuple[str, ...] = ()
    shown_cbrs: tuple[float, ...] | None = None


_REGISTRY: dict[str, SchemeSpec] = {}
_BUILTIN_LOADED = False
#: characters a scheme name cannot hold: run labels read ``name@cbr`` and ``name[options]``
NAME_RESERVED = "@[],"


def register_scheme(spec: SchemeSpec) -> None:
    """Add (or replace) a scheme in the registry: yours (``get_scheme``, ``semcom.eval`` and
    :func:`semcom.cli.main` in the same process find it) or a built-in one, by its name.
    ``ValueError`` for a name that is empty or holds whitespace or one of
    :data:`NAME_RESERVED`."""
    name = spec.name
    bad = not isinstance(name, str) or not name
    if bad or any(c.isspace() or c in NAME_RESERVED for c in name):
        raise ValueError(
            f"scheme name {name!r} must be a non-empty word without whitespace or any of "
            f"{' '.join(NAME_RESERVED)} (results label runs name@cbr and name[options])"
        )
    _REGISTRY[name] = spec


def _load_builtin() -> None:
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    # a scheme registered before the built-ins load replaces the one of its name, as after
    yours = dict(_REGISTRY)
    # Importing these modules registers their schemes.
    from .codecs import registry  # noqa: F401
    from .diffusion import registry as _diffusion  # noqa: F401
    from .separation import registry as _separation  # noqa: F401

    builtin = {n for n, spec in _REGISTRY.items() if yours.get(n) is not spec}
    _load_plugins(builtin)
    _REGISTRY.update(yours)  # one's own registration in this process wins over both
    _BUILTIN_LOADED = True


def _load_plugins(builtin: set[str]) -> None:
    """Load the ``semcom.schemes`` entry points of installed packages: each names a module
    (importing it registers its schemes) or a callable (called with no arguments to register
    them), e.g. in a package's ``pyproject.toml``::

        [project.entry-points."semcom.schemes"]
        mine = "my_package.semcom_plugin:register"

    A plugin that fails to load is warned of and skipped (the built-in schemes still work); a
    scheme of the ``builtin`` names it registers is put back and warned of (results label a
    curve by its scheme's name: a plugin's under a built-in name would pass for semcom's)."""
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        before = dict(_REGISTRY)
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as e:  # a broken plugin must not break semcom
            _REGISTRY.clear()
            _REGISTRY.update(before)
            warnings.warn(
                f"semcom plugin {ep.name!r} ({ep.value}) failed to load and is skipped: "
                f"{type(e).__name__}: {e}",
                stacklevel=2,
            )
            continue
        taken = sorted(n for n in builtin if _REGISTRY.get(n) is not before[n])
        if taken:
            _REGISTRY.update({n: before[n] for n in taken})
            warnings.warn(
                f"semcom plugin {ep.name!r} registers the built-in scheme name(s) "
                f"{', '.join(taken)}: ignored (a plugin's scheme needs a name of its own)",
                stacklevel=2,
            )


def list_schemes() -> list[SchemeSpec]:
    """All registered schemes, sorted by name."""
    _load_builtin()
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


#: the name an option has in a run label, where it differs from the option's: its flag's.
LABEL_NAMES = OPTION_FLAGS


def fixed_cbr(name: str) -> float | None:
    """The single CBR of a scheme fixed by its codec (``vae``: 1/12), else None."""
    _load_builtin()
    spec = _REGISTRY.get(name)
    return spec.cbrs[0] if spec is not None and spec.cbrs and len(spec.cbrs) == 1 else None


def run_name(name: str, **options) -> str:
    """The name of a scheme's curve in results: ``name``, plus the non-default receiver
    options it accepts, e.g. ``vae+dm[fading=naive,steps=4]`` (``vae`` stays ``vae``)."""
    _load_builtin()
    spec = _REGISTRY.get(name)
    if spec is None:
        return name
    kw = [
        f"{LABEL_NAMES.get(k, k)}={options[k]}"
        for k in LABELLED_OPTIONS
        if options.get(k) is not None and k in spec.options
    ]
    return f"{name}[{','.join(kw)}]" if kw else name


def get_scheme(
    name: str, cbr: float | str | None = None, device: str | torch.device = "cpu", **options
) -> Scheme:
    """Build scheme ``name`` (at ``cbr``, complex channel uses per real source value, e.g.
    ``1/16`` or ``"1/16"``, when it offers several) on ``device``: a
    :class:`~semcom.link.Scheme` whose ``transmit(images, channel, snr_db, generator)`` sends
    ``[B, 3, H, W]`` images in [0, 1] at ``snr_db`` (Es/N0 in dB, scalar or [B]).

    ``options`` (e.g. ``matching="vp", steps=4``; a scheme's are listed in
    ``SchemeSpec.options`` by :func:`list_schemes`) go to the scheme's factory; ``None`` means
    the default. An option the scheme does not take raises ``ValueError`` (it would change
    nothing: a typo, or a receiver option given to a plain scheme). They are the CLI's flags
    with underscores:

    * ``deepjscc``, ``adjscc``: ``codec_path`` (zoo name, run folder or ``.safetensors``).
    * ``vae+dm``, ``deepjscc+dm``, ``adjscc+dm``: ``matching`` (``continuous`` | ``vp`` |
      ``ddm``), ``steps`` (int >= 1), ``fading`` (``naive`` | ``waterfill`` | ``reference``),
      ``fading_grid`` (``time`` | ``quantile``), ``fading_samples`` (int >= 1), ``dm_stop``
      (``auto`` | ``clean``), ``dm_decoder`` (``auto`` | ``base`` | a checkpoint reference),
      ``snr_source`` (``known`` | ``moment`` | ``learned``), ``denoiser_path``,
      ``estimator_path``; the JSCC ones also ``codec_path``.
    * separation baselines (``jpeg+capacity``, ``webp+ldpc``, ...): none.
    """
    _load_builtin()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(
            f"unknown scheme {name!r}; {hint}available: {', '.join(sorted(_REGISTRY))}"
        )
    spec = _REGISTRY[name]
    kw = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(set(kw) - set(spec.options))
    if foreign:
        takes = ", ".join(sorted(spec.options)) or "no options"
        # the three options named otherwise than their CLI flags
        renamed = [
            f"{k} is {o}" for o, k in OPTION_FLAGS.items() if k in foreign and o in spec.options
        ]
        takes += "; " + ", ".join(renamed) if renamed else ""
        raise ValueError(
            f"scheme {name!r} does not take option(s) {', '.join(foreign)} (it takes: {takes})"
        )
    if cbr is not None:
        from .channels import parse_cbr

        cbr = parse_cbr(cbr)
    from .devices import parse_device

    return spec.factory(cbr, parse_device(str(device)), **kw)


__all__ = [
    "LABELLED_OPTIONS",
    "LABEL_NAMES",
    "NAME_RESERVED",
    "OPTION_FLAGS",
    "PLUGIN_GROUP",
    "SchemeSpec",
    "fixed_cbr",
    "get_scheme",
    "list_schemes",
    "register_scheme",
    "run_name",
]
