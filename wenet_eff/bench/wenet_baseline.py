"""WeNet's own U2++ model as a training-speed baseline (`train_throughput --wenet_dir DIR`):
built by WeNet's code from a WeNet source tree, with the configuration and the weights of one
of our models, so both train on the same batch from the same point.

What is imported, and why not more: WeNet's package `__init__` imports its command-line
tools (librosa, torchaudio), and `wenet/models/transformer/asr_model.py` imports
`wenet/utils/ctc_utils.py`, which imports torchaudio at module level; torchaudio's wheels are
built for one torch release and do not load beside another. So the package is registered
without running its `__init__`, and only the modules that build the model are imported:
WeNet's Conformer encoder, bidirectional decoder, CTC, label-smoothing loss and the target
helpers of `wenet/utils/common.py`. `U2ppLoss` composes WeNet's training loss from them in
the order `ASRModel.forward` does. `wenet/utils/common.py` imports `whisper.tokenizer`
(openai-whisper must be importable). WeNet's squeezeformer module (imported by
`wenet/utils/class_utils.py`) imports `Union` and `Optional` from `torch.nn.modules.conv`,
which re-exported them from `typing` until torch 2.12: they are set back there (the same
objects) when missing. WeNet's own training optimizer is `torch.optim.Adam(params,
**optim_conf)` (its `init_optimizer_and_scheduler`): `wenet_optimizer` builds that.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType

import torch
from omegaconf import DictConfig

from wenet_eff.export.wenet import wenet_train_yaml

# where WeNet keeps its model modules (since its 2025 layout)
_PACKAGE = "wenet.models.transformer"


def _register_package(root: Path) -> None:
    """Make `wenet` the package at `root` without running its __init__ (see the docstring)."""
    loaded = sys.modules.get("wenet")
    if loaded is not None:
        where = [str(Path(p).resolve()) for p in getattr(loaded, "__path__", [])]
        if where != [str(root.resolve())]:
            raise RuntimeError(
                f"a different `wenet` package is already imported ({where}): run the "
                f"benchmark in a fresh process to compare with {root}"
            )
        return
    spec = importlib.machinery.ModuleSpec("wenet", None, is_package=True)
    spec.submodule_search_locations = [str(root)]
    sys.modules["wenet"] = importlib.util.module_from_spec(spec)


def import_wenet(wenet_dir: str) -> dict[str, ModuleType]:
    """WeNet's model modules from the source tree `wenet_dir` (the folder holding `wenet/`):
    {"encoder", "decoder", "ctc", "label_smoothing_loss", "common"}."""
    root = Path(wenet_dir) / "wenet"
    if not (root / "models" / "transformer" / "encoder.py").is_file():
        raise FileNotFoundError(
            f"--wenet_dir {wenet_dir}: no wenet/models/transformer/encoder.py there; give the "
            "folder that holds WeNet's `wenet` package (a checkout of "
            "github.com/wenet-e2e/wenet from 2025 on)"
        )
    _register_package(root)
    conv = torch.nn.modules.conv
    for name in ("Union", "Optional"):
        if not hasattr(conv, name):
            setattr(conv, name, getattr(typing, name))
    try:
        modules = {
            name: importlib.import_module(f"{_PACKAGE}.{name}")
            for name in ("encoder", "decoder", "ctc", "label_smoothing_loss")
        }
        modules["common"] = importlib.import_module("wenet.utils.common")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"WeNet's model code in {wenet_dir} needs {exc.name!r}, not installed here "
            f"(`pip install {'openai-whisper' if exc.name == 'whisper' else exc.name}`)"
        ) from exc
    return modules


def wenet_version(wenet_dir: str) -> str:
    """The git commit of the WeNet tree (`git describe`), or '' when it is not a checkout."""
    try:
        return subprocess.run(
            ["git", "-C", wenet_dir, "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""


class U2ppLoss(torch.nn.Module):
    """WeNet's U2++ model (its encoder, decoder, CTC and loss modules) with our model's
    training interface: `forward(speech, speech_lengths, text, text_lengths)` -> {"loss",
    "loss_ctc", "loss_att", "th_accuracy"}, WeNet's losses as `ASRModel.forward` forms them.
    Its state-dict names are WeNet's ASRModel's (`encoder.*`, `decoder.*`, `ctc.*`).

    Args:
        wenet: `import_wenet`'s modules.
        raw: WeNet's train.yaml as a dict (`wenet_eff.export.wenet.wenet_train_yaml`).
    """

    def __init__(self, wenet: dict[str, ModuleType], raw: dict):
        super().__init__()
        self.common = wenet["common"]
        vocab = raw["output_dim"]
        conf = raw["model_conf"]
        special = raw["tokenizer_conf"]["special_tokens"]
        self.sos, self.eos = special["<sos>"], special["<eos>"]
        self.vocab_size = vocab
        self.ctc_weight = conf["ctc_weight"]
        self.reverse_weight = conf["reverse_weight"]
        self.ignore_id = self.common.IGNORE_ID
        self.encoder = wenet["encoder"].ConformerEncoder(raw["input_dim"], **raw["encoder_conf"])
        self.decoder = wenet["decoder"].BiTransformerDecoder(
            vocab, self.encoder.output_size(), **raw["decoder_conf"]
        )
        self.ctc = wenet["ctc"].CTC(
            vocab, self.encoder.output_size(), blank_id=raw["ctc_conf"]["ctc_blank_id"]
        )
        self.criterion_att = wenet["label_smoothing_loss"].LabelSmoothingLoss(
            size=vocab,
            padding_idx=self.ignore_id,
            smoothing=conf["lsm_weight"],
            normalize_length=conf["length_normalized_loss"],
        )

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """speech (B, T, D), speech_lengths (B,), text (B, L) padded with -1, text_lengths (B,)."""
        c = self.common
        encoder_out, encoder_mask = self.encoder(speech, speech_lengths)
        loss_ctc, _ = self.ctc(encoder_out, encoder_mask.squeeze(1).sum(1), text, text_lengths)
        ys_in, ys_out = c.add_sos_eos(text, self.sos, self.eos, self.ignore_id)
        r_ys = c.reverse_pad_list(text, text_lengths, float(self.ignore_id))
        r_ys_in, r_ys_out = c.add_sos_eos(r_ys, self.sos, self.eos, self.ignore_id)
        left, right, _ = self.decoder(
            encoder_out, encoder_mask, ys_in, text_lengths + 1, r_ys_in, self.reverse_weight
        )
        loss_att = self.criterion_att(left, ys_out)
        r_loss_att = torch.tensor(0.0)
        if self.reverse_weight > 0.0:
            r_loss_att = self.criterion_att(right, r_ys_out)
        loss_att = loss_att * (1 - self.reverse_weight) + r_loss_att * self.reverse_weight
        accuracy = c.th_accuracy(
            left.view(-1, self.vocab_size), ys_out, ignore_label=self.ignore_id
        )
        loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        return {"loss": loss, "loss_ctc": loss_ctc, "loss_att": loss_att, "th_accuracy": accuracy}


def build_wenet_model(wenet_dir: str, cfg: DictConfig, model: torch.nn.Module) -> U2ppLoss:
    """WeNet's model of `cfg`'s architecture, holding `model`'s weights (loaded strictly: every
    name and shape must match), on `model`'s device, in training mode."""
    raw = wenet_train_yaml(cfg, model, {"units": "units.txt"})
    wenet = U2ppLoss(import_wenet(wenet_dir), raw)
    device = next(model.parameters()).device
    wenet.load_state_dict(model.state_dict(), strict=True)
    return wenet.to(device).train()


def wenet_optimizer(params, cfg: DictConfig) -> torch.optim.Optimizer:
    """What WeNet's trainer builds for `optim: adam` / `adamw` with `cfg.optim`'s optim_conf."""
    name = cfg.optim.name
    if name not in ("adam", "adamw"):
        raise ValueError(f"optim.name={name}: WeNet trains with adam or adamw; compare with one")
    conf = {
        "lr": cfg.optim.lr,
        "betas": tuple(cfg.optim.betas),
        "eps": cfg.optim.eps,
        "weight_decay": cfg.optim.weight_decay,
    }
    return (torch.optim.Adam if name == "adam" else torch.optim.AdamW)(params, **conf)


@torch.no_grad()
def loss_check(ours: torch.nn.Module, wenet: U2ppLoss, batch: tuple) -> dict[str, float]:
    """Both models' losses on `batch` in eval mode with full context (no random chunk), so the
    same weights must give the same loss up to float rounding: {"ours", "wenet",
    "relative_difference"}. Leaves both in training mode."""
    losses = {}
    for name, m in (("ours", ours), ("wenet", wenet)):
        dynamic = m.encoder.use_dynamic_chunk
        m.eval()
        m.encoder.use_dynamic_chunk = False
        losses[name] = float(m(*batch)["loss"])
        m.encoder.use_dynamic_chunk = dynamic
        m.train()
    losses["relative_difference"] = abs(losses["ours"] - losses["wenet"]) / abs(losses["wenet"])
    return losses
