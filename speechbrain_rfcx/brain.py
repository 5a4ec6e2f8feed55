"""SEDBrain: SpeechBrain's Brain for sound-event detection on crops.

Training batches are crops with clip, frame and mask targets (see
``speechbrain_rfcx.data.pipelines.crop_pipeline``); validation and test
batches are whole recordings, scored by the same whole-recording code users
run (``speechbrain_rfcx.inference.score_recordings``, which calls the
``score_audio`` that ``rfcx-detect`` calls: one pass per recording for
convolutional models, windows pooled on its frames; every window otherwise),
so the checkpoint kept is the one that is best on whole recordings. Ground truth reaches nothing
but the metric.

Modules (``modules`` argument): ``model`` (the model contract) and ``loss``
(``speechbrain_rfcx.losses.SEDLoss``; its parameters, e.g. centre-loss
centres, are trained and checkpointed like the model's).

hparams read by SEDBrain:

- ``augment``: a ``BatchAugment`` (or None);
- ``loss_opt_class``: optimiser for the loss parameters (the original
  research trained the centres with their own Adam), or None to train them
  with ``opt_class``;
- ``lr_scheduler``: callable ``optimizer -> torch LR scheduler`` stepped after
  every optimiser step (or None);
- ``seed``: each training epoch reseeds every RNG from it and the epoch;
- ``sample_rate``, ``valid_window`` and ``valid_hop`` (seconds),
  ``valid_batch_windows`` (windows per forward pass of the models that run
  every window); optional ``valid_full_pass`` (default True): False runs
  every window of convolutional models too (slower; the scorer's
  ``windowed=True``, as ``rfcx-detect --windowed``);
- ``loggers``: a list of SpeechBrain train loggers (text file, TensorBoard);
  ``epoch_counter``; ``class_names`` for the per-species table.
"""

import logging
import os

import speechbrain as sb
import torch
from speechbrain.utils.seed import seed_everything
from torch.nn.parallel import DistributedDataParallel

from speechbrain_rfcx.data.crops import TARGET_KEYS
from speechbrain_rfcx.inference import score_recordings
from speechbrain_rfcx.metrics import LwlrapStats

logger = logging.getLogger(__name__)


def unwrap(module):
    """The module inside a DDP / DataParallel wrapper (or the module itself)."""
    return module.module if hasattr(module, "module") else module


class SEDBrain(sb.Brain):
    """Brain for SED training on crops and whole-recording validation.

    Example
    -------
    >>> from speechbrain_rfcx.losses import ClipBCE, SEDLoss
    >>> model = torch.nn.Linear(1, 1)  # any model keeping the contract
    >>> brain = SEDBrain(
    ...     modules={"model": model, "loss": SEDLoss({"clip": ClipBCE()})},
    ...     hparams={"augment": None, "loss_opt_class": None, "lr_scheduler": None},
    ...     run_opts={"device": "cpu"},
    ... )
    >>> sorted(brain.modules.keys())
    ['loss', 'model']
    """

    # --- training ---------------------------------------------------------

    def batch_targets(self, batch):
        """The target dict of a crop batch (``speechbrain_rfcx.data.crops``'
        contract): the crop targets and ``lens``."""
        targets = {key: getattr(batch, key).data for key in TARGET_KEYS}
        targets["lens"] = batch.signal.lengths
        return targets

    def compute_forward(self, batch, stage):
        """Crops -> model outputs and targets; recordings -> clip logits."""
        batch = batch.to(self.device)
        wavs, lens = batch.signal
        if stage == sb.Stage.TRAIN:
            targets = self.batch_targets(batch)
            if self.hparams.augment is not None:
                wavs, targets = self.hparams.augment(wavs, targets)
            return self.modules.model(wavs, targets["lens"]), targets
        return self.score(wavs, lens)["clip_logits"]

    def score(self, wavs, lens):
        """Whole-recording scores with the validation windows (no DDP hooks)."""
        rate = self.hparams.sample_rate
        return score_recordings(
            unwrap(self.modules.model),
            wavs,
            lens,
            window=int(round(self.hparams.valid_window * rate)),
            hop=int(round(self.hparams.valid_hop * rate)),
            batch_size=self.hparams.valid_batch_windows,
            windowed=not getattr(self.hparams, "valid_full_pass", True),
        )

    def compute_objectives(self, predictions, batch, stage):
        """SED loss on crops; on recordings, BCE on the TP labels + metrics."""
        if stage == sb.Stage.TRAIN:
            outputs, targets = predictions
            loss, parts = self.modules.loss(outputs, targets)
            for name, value in parts.items():
                self.loss_parts[name] = self.loss_parts.get(name, 0.0) + float(value)
            self.loss_parts_count += 1
            return loss
        truth = batch.recording_target.data
        mask = batch.recording_label_mask.data
        self.stats.append(batch.id, predictions.detach(), truth, mask)
        return torch.nn.functional.binary_cross_entropy_with_logits(predictions, truth)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Steps the per-step learning-rate schedule."""
        if should_step and self.lr_scheduler is not None:
            self.lr_scheduler.step()

    # --- stages ------------------------------------------------------------

    def on_stage_start(self, stage, epoch=None):
        """Fresh accumulators for the stage."""
        if stage == sb.Stage.TRAIN:
            self.loss_parts, self.loss_parts_count = {}, 0
            # Each epoch starts from its own seed (per process), so a run
            # resumed from an end-of-epoch checkpoint draws the same crops,
            # offsets and mixup as an uninterrupted one.
            rank = int(os.environ.get("RANK", 0))
            seed_everything(
                self.hparams.seed + 1009 * epoch + 7919 * rank, verbose=False
            )
        else:
            self.stats = LwlrapStats(class_names=self.hparams.class_names)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, keeps the best checkpoint by validation lwlrap."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            for name, total in self.loss_parts.items():
                self.train_stats[f"loss_{name}"] = total / max(1, self.loss_parts_count)
            return
        self.stats.gather()
        summary = self.stats.summarize()
        stats = {"loss": stage_loss, "lwlrap": summary["lwlrap"]}
        if "masked_lwlrap" in summary:
            stats["masked_lwlrap"] = summary["masked_lwlrap"]
        if stage == sb.Stage.VALID:
            # checkpoint first: a logged epoch is always a saved epoch
            self.checkpointer.save_and_keep_only(
                meta={"lwlrap": stats["lwlrap"], "epoch": epoch},
                max_keys=["lwlrap"],
            )
            meta = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            self.log_stats(meta, train_stats=self.train_stats, valid_stats=stats)
        else:
            meta = {"Epoch loaded": self.hparams.epoch_counter.current}
            self.log_stats(meta, test_stats=stats)
        self.last_stats = stats

    def log_stats(self, meta, **stats):
        """Sends stats to every logger of ``hparams.loggers``.

        Called on every process: SpeechBrain's loggers write on the main one
        and synchronise the others.
        """
        for log in self.hparams.loggers:
            log.log_stats(stats_meta=meta, **stats)

    # --- optimisation ------------------------------------------------------

    def init_optimizers(self):
        """Model optimiser, loss-parameter optimiser, per-step LR schedule."""
        model_params = [p for p in self.modules.model.parameters() if p.requires_grad]
        loss_params = [p for p in self.modules.loss.parameters() if p.requires_grad]
        separate = loss_params and self.hparams.loss_opt_class is not None
        self.optimizer = self.opt_class(
            model_params if separate or not loss_params else model_params + loss_params
        )
        self.optimizers_dict = {"model": self.optimizer}
        if separate:
            self.optimizers_dict["loss"] = self.hparams.loss_opt_class(loss_params)
        self.lr_scheduler = None
        if self.hparams.lr_scheduler is not None:
            self.lr_scheduler = self.hparams.lr_scheduler(self.optimizer)
        if self.checkpointer is not None:
            for name, opt in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(f"optimizer_{name}", opt)
            if self.lr_scheduler is not None:
                self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)

    # --- data --------------------------------------------------------------

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **kwargs):
        """SpeechBrain's loader; the train sampler gets ``set_epoch`` every
        epoch, and under DDP every process scores its own share of the
        validation / test recordings (the metric gathers them)."""
        sampler = kwargs.get("sampler")
        if stage != sb.Stage.TRAIN and self.distributed_launch and sampler is None:
            kwargs["sampler"] = torch.utils.data.DistributedSampler(
                dataset, shuffle=False
            )
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **kwargs)
        if stage == sb.Stage.TRAIN and self.train_sampler is None:
            if hasattr(sampler, "set_epoch"):
                self.train_sampler = sampler
        return loader

    def _wrap_distributed(self):
        """DDP without SyncBatchNorm on CPU (gloo has no SyncBatchNorm).

        SpeechBrain 1.1.2 converts BatchNorm to SyncBatchNorm for every DDP
        run, which fails on CPU; on GPUs its behaviour is kept.
        """
        if not self.distributed_launch or self.device != "cpu":
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )
