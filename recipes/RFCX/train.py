#!/usr/bin/env python3
"""Train one cross-validation fold of an SED model on RFCX-format data.

    python train.py hparams/conformer.yaml                      # synthetic data
    python train.py hparams/efficientnet_b0.yaml --data_folder=/data/rfcx --fold=2
    torchrun --standalone --nproc_per_node=2 train.py hparams/small_cpu.yaml \
        --distributed_backend=gloo --device=cpu

Crops are drawn around TP (and, with masked supervision, FP) boxes; the
held-out fold is scored on whole recordings with the inference code of
``speechbrain_rfcx.inference`` (one pass per recording for convolutional
models, every window otherwise); the best checkpoint by validation lwlrap is
kept. The fold folder is a complete detector (``detector_settings.yaml``:
windows, class names, species bands; the checkpoints), loadable by
``SpeciesDetector`` without the data. At the end the best checkpoint scores
every held-out recording (out-of-fold predictions and a per-species lwlrap
table) and, when the data has complete test labels (the synthetic data
does), the test set. Running the same command again resumes from the last
checkpoint. With ``--pseudo_labels=<folder>`` (set by ``pseudo_label.py``)
the crops carry pseudo-labels in the cells no human box labels.
"""

import os
import sys

import speechbrain as sb
import torch

from speechbrain_rfcx import experiment
from speechbrain_rfcx.brain import SEDBrain
from speechbrain_rfcx.data.prepare import summarize_manifest
from speechbrain_rfcx.metrics import chance_lwlrap


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)  # no-op without torchrun
    hparams = experiment.load_hparams(hparams_file, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["fold_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    data_folder, _ = experiment.resolve_data_folder(hparams)
    manifest = experiment.prepare(hparams, data_folder)
    # the fold folder is a detector on its own: settings and bands saved there
    sb.utils.distributed.run_on_main(
        experiment.save_detector_settings, args=[hparams, data_folder]
    )
    if sb.utils.distributed.if_main_process():
        print(
            summarize_manifest(
                hparams["prepare_folder"] + "/train.json",
                hparams["n_classes"],
                hparams["class_names"],
            )
        )
    unlabelled = None
    if hparams["pseudo_labels"] is not None and hparams["pseudo_label_test"]:
        # pseudo-labelling rounds (pseudo_label.py): test recordings join
        # the random crops with their pseudo-labels only
        unlabelled = experiment.load_manifest(hparams, data_folder, "test")
    data = experiment.fold_datasets(hparams, manifest, unlabelled)

    brain = SEDBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        data["train"],
        data["valid"],
        train_loader_kwargs={
            "batch_size": hparams["batch_size"],
            "sampler": data["sampler"],
            "num_workers": hparams["num_workers"],
            "drop_last": True,
        },
        valid_loader_kwargs={"batch_size": hparams["valid_batch_size"]},
    )

    # Out-of-fold predictions of the best checkpoint, per-species table.
    brain.evaluate(
        data["oof"],
        max_key="lwlrap",
        test_loader_kwargs={"batch_size": hparams["valid_batch_size"]},
    )
    if sb.utils.distributed.if_main_process():
        folder = hparams["fold_folder"]
        stats = brain.stats
        experiment.write_scores(
            os.path.join(folder, "oof_predictions.csv"),
            stats.ids,
            torch.sigmoid(torch.cat(stats.scores)),
        )
        with open(os.path.join(folder, "per_species_lwlrap.txt"), "w") as f:
            stats.write_stats(f, verbose=True)
        chance = chance_lwlrap(torch.cat(stats.targets))
        print(
            f"held-out fold {hparams['fold']}, TP labels: lwlrap "
            f"{brain.last_stats['lwlrap']:.4f} (random scores: {chance:.4f})"
        )

    test_set = experiment.complete_test_set(hparams, data_folder)
    if test_set is not None:  # synthetic data: the test set has complete labels
        brain.evaluate(
            test_set,
            max_key="lwlrap",
            test_loader_kwargs={"batch_size": hparams["valid_batch_size"]},
        )
        if sb.utils.distributed.if_main_process():
            path = os.path.join(hparams["fold_folder"], "test_lwlrap.txt")
            with open(path, "w") as f:
                brain.stats.write_stats(f)
            chance = chance_lwlrap(torch.cat(brain.stats.targets))
            print(
                f"test set, complete labels: lwlrap {brain.last_stats['lwlrap']:.4f}"
                f" (random scores: {chance:.4f}; details in {path})"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
    if torch.distributed.is_initialized():
        # Ranks leave together: a rank exiting while gloo still talks to the
        # other can abort ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
