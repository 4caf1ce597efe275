"""The model zoo: trained checkpoints shipped with semcom.

Each entry is a pair in ``semcom/zoo/checkpoints/`` (package data):

* ``<name>.safetensors``: the weights, with the architecture in the file's metadata
  (``model``, ``c``, ``width``);
* ``<name>.json``: the model card: ``name``, ``model``, ``model_config``, ``cbr``,
  ``channel``, ``snr_train``, ``data``, ``test`` (data set, SNRs, PSNR), ``command``
  (how it was trained), ``hours``, ``hardware``, ``seed``, ``git_commit``, ``sha256``.

Your own entries go to a *user zoo*: the folders named in ``SEMCOM_ZOO`` (``os.pathsep``
separated) are searched after the shipped one, and ``semcom zoo add`` writes into the first of
them (without it: into the shipped folder, for a checkout that ships models). A user entry is
found by its name (``--codec NAME``, ``--denoiser NAME``) and by the fingerprint of the codec it
was trained on (a denoiser, SNR estimator or decoder for your codec); it is a scheme's default
only at a CBR nothing shipped serves (a shipped entry stays its CBR's default); a name in two
zoo folders is refused.

``semcom zoo list`` prints them; :func:`load_codec` loads the codec for a model and CBR
(used by the ``deepjscc`` / ``adjscc`` schemes); ``semcom zoo add RUN NAME`` (:func:`export_to_zoo`
for JSCC runs) turns a finished run folder into a zoo entry.
"""

# also the public names that __all__ leaves out (sha256_file, resolve_weights, ...): semcom's
# modules import them from here
from .catalog import (  # noqa: F401
    CARD_FORMAT,
    ZOO_DIR,
    ZOO_ENV,
    ZooEntry,
    codec_snr_train,
    default_zoo_dir,
    find_checkpoint,
    find_dm_decoder,
    init_ref,
    list_checkpoints,
    load_codec,
    read_card,
    resolve_weights,
    shipped_cbrs,
    shipped_denoiser_cbrs,
    trained_data,
    user_zoo_dirs,
    zoo_dirs,
    zoo_ref,
)
from .cli import add_zoo_parser, cmd_zoo_add, cmd_zoo_list, format_table  # noqa: F401
from .export import (  # noqa: F401
    chain_hardware,
    check_entry_name,
    check_export,
    check_same_checkpoint,
    export_to_zoo,
    run_provenance,
    sha256_file,
    unfinished,
    val_when,
)

__all__ = [
    "ZOO_DIR",
    "ZOO_ENV",
    "ZooEntry",
    "add_zoo_parser",
    "check_entry_name",
    "check_export",
    "codec_snr_train",
    "default_zoo_dir",
    "export_to_zoo",
    "find_checkpoint",
    "format_table",
    "list_checkpoints",
    "load_codec",
    "read_card",
    "run_provenance",
    "shipped_cbrs",
    "trained_data",
    "user_zoo_dirs",
    "val_when",
    "zoo_dirs",
]
