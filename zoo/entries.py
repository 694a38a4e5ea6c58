"""Every entry of the zoo: an architecture, the report's recipe and the report's own test numbers.

Importing this module imports every model module (registering the architectures), then registers
the entries. Numbers are fractions; `num_params` is metadata that tests/test_zoo_registry.py
recomputes from the builders. Where a report is silent, the choice and its reason are written here
or in the model module's docstring.
"""

from __future__ import annotations

from typing import Any

from zoo.cifar10 import CLASSES
from zoo.entry import Entry, Reported
from zoo.models import cnn002, cnn004, cnn3, gru, mixer, mlp, net003, resnet12, tinyvgg, torchvision_nets, vit
from zoo.recipe import EarlyStopping, Recipe
from zoo.registry import register_entry

_ = (cnn002, cnn3, cnn004, gru, mixer, mlp, net003, resnet12, tinyvgg, torchvision_nets, vit)  # registered


def add(name: str, architecture: str, recipe: Recipe, report: str, report_model: str, family: str, kind: str,
        reported: Reported, num_params: int, arch_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None, description: str = "") -> Entry:
    return register_entry(Entry(name=name, architecture=architecture, recipe=recipe, report=report,
                                report_model=report_model, family=family, kind=kind,
                                arch_kwargs=arch_kwargs or {}, reported=reported, pretrained=pretrained,
                                description=description, num_params=num_params))


# --- report 000 (Pasotto): five families, each trained on normalised and on augmented data ----------
# Adam 1e-3, at most 100 epochs, 20% validation split, early stopping on the validation loss after 5
# epochs without improvement (min_delta 0.001 from the authors' utils.py). Hyperparameters were
# selected on normalised data and reused for augmentation. Batch sizes are the per-model selections
# (the GRU's size and batch come from the authors' notebook: the report's own contradict its grid).
R000 = Recipe(optimizer="adam", lr=1e-3, max_epochs=100, normalize="dataset",
              early_stopping=EarlyStopping(monitor="val_loss", patience=5, min_delta=0.001))
AUG000 = ("random crop (32, padding 4), horizontal flip, rotation 15 degrees, colour jitter (0.2, 0.2, 0.2, 0.1) "
          "as in the authors' notebook")
M000 = [  # name, architecture, family, batch size, report's name, params, (norm acc, loss), (aug acc, loss)
    ("tinyvgg", "TinyVGG (hidden 128)", "cnn", 128, 528_266, (0.7582, 1.081), (0.8109, 0.568)),
    ("resnet12", "ResNet-12 (hidden 128)", "resnet", 64, 31_985_930, (0.8457, 0.629), (0.8981, 0.340)),
    ("gru", "GRU (hidden 128, 4 layers)", "rnn", 64, 385_290, (0.6844, 1.033), (0.7147, 0.845)),
    ("vit", "ViT (embed 64, depth 8, MLP 512)", "transformer", 32, 672_202, (0.6706, 1.105), (0.7509, 0.712)),
    ("mixer", "MLP-Mixer (embed 64, depth 6, token 64, channel 128)", "mlp-mixer", 32, 154_826,
     (0.7173, 0.884), (0.7281, 0.782)),
]
for arch, title, family, batch, params, norm, aug in M000:
    add(f"{arch}-norm", arch, R000.replace(batch_size=batch, augment="norm"), "000", f"{title}, normalisation",
        family, "norm", Reported(*norm, where="report 000, table 1"), params,
        description="Trained on normalised images only (train-split mean/std).")
    add(f"{arch}-aug", arch, R000.replace(batch_size=batch, augment="aug"), "000", f"{title}, data augmentation",
        family, "aug", Reported(*aug, where="report 000, table 2"), params,
        description=f"Trained with data augmentation: {AUG000}.")

# --- report 001 (Sobieski & Olejnik): Kaggle CIFAR-10, inputs scaled to [0, 1], no mean/std ---------
# Adam, batch 128, at least 30 epochs, then stop when the validation accuracy has not exceeded the
# best of a 4-epoch window (the window counts the best epoch, so: 3 epochs without improvement, as in
# the authors' utils.run). Reported numbers are Kaggle's test set (300,000 images of which Kaggle
# scores its 10,000 CIFAR-10 test images), one submission of the best model per experiment.
R001 = Recipe(optimizer="adam", lr=1e-3, batch_size=128, max_epochs=100, min_epochs=30, normalize="none",
              early_stopping=EarlyStopping(monitor="val_acc", patience=3))
KAGGLE = "Kaggle CIFAR-10 test set (Kaggle scores the 10,000 CIFAR-10 test images among its 300,000)"
add("mlp-s-norm", "mlp-s", R001.replace(weight_decay=0.01), "001", "MLP S (1500-500-100), experiment I", "mlp",
    "norm", Reported(0.4242, where="report 001, section 3 (experiment 1)", note=KAGGLE), 5_411_110,
    description="Flattened [0, 1] images, L2 penalty 0.01, dropout 0.1 after the last hidden layer.")
add("mlp-l-norm", "mlp-l", R001.replace(weight_decay=0.01), "001", "MLP L (2048-...-16), experiment I", "mlp",
    "norm", Reported(None, where="report 001, figures 1-2",
                     note="no test number: the large MLP did not learn (losses flat, chance-level validation "
                          "accuracy); the authors' network ended in a softmax fed to cross-entropy"), 9_091_738,
    description="Flattened [0, 1] images, L2 penalty 0.01, dropout 0.1 after the last hidden layer.")
add("cnn3-basic", "cnn3", R001.replace(augment="basic"), "001",
    "CNN 32-64-128, dropout 0.5, basic augmentation, experiment II", "cnn", "aug",
    Reported(0.7252, where="report 001, section 3 (experiment 2)", note=f"{KAGGLE}; validation about 71%"),
    376_834, description="Best configuration of experiment II: batch 128, lr 1e-3, dropout 0.5, no L2, "
                         "basic augmentation (horizontal flip, colour jitter, rotation up to 10 degrees).")
add("vit-tiny-norm", "vit-tiny", R001, "001", "ViT (6 layers, dim 30, patch 4), experiment III", "transformer",
    "norm", Reported(0.5408, where="report 001, section 3 (experiment 3)", note=f"{KAGGLE}; validation about 51%"),
    776_764, description="Training hyperparameters had little effect in the report; we take the authors' base "
                         "configuration: batch 128, lr 1e-3, no L2, no augmentation.")

# Fine-tunes: ImageNet weights, new 10-way head, the models' own preprocessing (ImageNet mean/std, the
# transforms' crop size). The authors' code trains only the new head (frozen backbone) with Adam 1e-4.
FT = R001.replace(lr=1e-4, normalize="imagenet")
FINETUNES = [  # architecture, input size, reported, params, report's name
    ("mobilenetv3-small", 224, Reported(0.8316, where="report 001, section 3 (experiment 4)",
                                        note=f"{KAGGLE}; the best fine-tune; validation about 87%"), 1_528_106,
     "MobileNet v3 S, fine-tuned from ImageNet"),
    ("efficientnetv2-s", 384, Reported(None, where="report 001, figure 12",
                                       note="no test number: only validation accuracy, about 73%"), 20_190_298,
     "EfficientNet v2 S, fine-tuned from ImageNet"),
    ("resnet18", 224, Reported(None, where="report 001, figure 12",
                               note="no test number: only validation accuracy, about 77%"), 11_181_642,
     "ResNet18, fine-tuned from ImageNet"),
]
for arch, size, reported, params, title in FINETUNES:
    from zoo.pretrained import IMAGENET_WEIGHTS

    add(f"{arch}-ft", arch, FT.replace(input_size=size), "001", title, "pretrained", "ft", reported, params,
        arch_kwargs={"pretrained": True, "freeze_backbone": True}, pretrained=IMAGENET_WEIGHTS[arch],
        description=f"ImageNet-1k weights, new 10-way linear head, only the head trained (the authors' "
                    f"feature_extract=True), images upsampled to {size} px as the torchvision transforms do.")

# --- report 002 (Beraldi & Miesbauer): AdamW (amsgrad) + ExponentialLR(0.9), validation every 5 epochs
# keeping the best weights, no early stopping. 40k/10k/10k split. The weight decay of the ResNet and CNN
# runs is AdamW's default (0.01): their code passes none. amsgrad is not expressible in the Recipe.
SOFTMAX_LOSS = ("test losses of report 002 are all >= 1.46, the floor of cross-entropy applied to softmax "
                "outputs (its CNN ends in a softmax): not comparable with losses computed on logits")
R002 = Recipe(optimizer="adamw", lr=1e-3, weight_decay=0.01, batch_size=128, scheduler="exponential", gamma=0.9,
              eval_every=5, early_stopping=None, normalize="dataset")
add("resnet18-scratch", "resnet18", R002.replace(max_epochs=60), "002", "ResNet18 (torchvision, from scratch)",
    "resnet", "norm", Reported(0.78, 1.49, where="report 002, section 6.4.1", note=SOFTMAX_LOSS), 11_181_642,
    description="torchvision ResNet18 with a 10-way output, untuned baseline, 60 epochs.")
add("cnn002-aug", "cnn002", R002.replace(max_epochs=120, augment="report002", augment_prob=0.5), "002",
    "CNN (3 conv blocks, 2-layer MLP)", "cnn", "aug",
    Reported(0.77, 1.68, where="report 002, section 6.4.2", note=SOFTMAX_LOSS), 652_426,
    description="120 epochs; augmentation (flip, rotation, random resized crop) applied with probability 0.5: "
                "the tuned probability is not reported, 0.5 is the middle of the searched range.")
add("vit002-norm", "vit002", R002.replace(lr=0.000365, weight_decay=0.1, max_epochs=60), "002",
    "ViT (patch 2, embed 32, 4 layers, 20 heads of 16)", "transformer", "norm",
    Reported(0.73, 1.81, where="report 002, section 6.4.3", note=SOFTMAX_LOSS), 487_466,
    description="Tuned: lr 0.000365, gamma 0.9, weight decay 0.1, batch 128; 60 epochs without augmentation "
                "(the run without augmentation had the higher validation accuracy).")

# --- report 003 (Ghasemi) ---------------------------------------------------------------------------------
# Adam 5e-4, batch 60, normalisation (0.5, 0.5); no validation split, no early stopping. Epochs: the
# code listing loops 30 times ("adjust as needed") but the text and the table row of the reported 84%
# (row 15) both say 20 epochs; the number we compare with comes from that run, so 20.
R003 = Recipe(optimizer="adam", lr=5e-4, batch_size=60, max_epochs=20, early_stopping=None, normalize="half")
add("net003-norm", "net003", R003, "003", "Net (5 conv + BN, adaptive pooling 2x2, dense 512-256-10)", "cnn",
    "norm", Reported(0.84, where="report 003, results (table row 15)",
                     note="printed as an integer percentage; no loss reported"), 2_753_546,
    description="The code listing's network, trained 20 epochs with (0.5, 0.5) normalisation.")

# --- report 004 (Mantovani & Palmieri) -------------------------------------------------------------------
# Adam 1e-3, batch 256, at most 25 epochs; stop when train accuracy exceeds the held-out accuracy by
# more than 10 points or after 10 epochs without improvement. (The report monitors the test set; we
# monitor the validation split.) Normalisation is not mentioned: train-split mean/std.
R004 = Recipe(optimizer="adam", lr=1e-3, batch_size=256, max_epochs=25, normalize="dataset",
              early_stopping=EarlyStopping(monitor="val_acc", patience=10, max_train_val_gap=0.10))
PER_CLASS_004 = {  # report 004, table 2, in CLASSES order
    "leaky-dropout": (0.833, 0.898, 0.626, 0.415, 0.688, 0.888, 0.822, 0.854, 0.816, 0.862),
    "leaky": (0.883, 0.923, 0.498, 0.529, 0.746, 0.729, 0.780, 0.877, 0.698, 0.902),
    "relu-dropout": (0.733, 0.701, 0.636, 0.516, 0.756, 0.721, 0.713, 0.903, 0.895, 0.962),
    "relu": (0.793, 0.829, 0.728, 0.675, 0.670, 0.766, 0.846, 0.780, 0.884, 0.912),
}
M004 = [  # suffix, activation, dropout, report's model number, total accuracy
    ("leaky-dropout", "leaky_relu", 0.5, 1, 0.7765),
    ("leaky", "leaky_relu", 0.0, 2, 0.7522),
    ("relu-dropout", "relu", 0.5, 3, 0.7536),
    ("relu", "relu", 0.0, 4, 0.7883),
]
for suffix, act, p, number, total in M004:
    per_class = dict(zip(CLASSES, PER_CLASS_004[suffix]))
    mean = sum(per_class.values()) / len(per_class)
    note = "per-class accuracies from table 2"
    if abs(mean - total) > 0.001:
        note += f"; they average to {mean:.2%}, not the table's total"
    act_name = "Leaky-ReLU" if act == "leaky_relu" else "ReLU"
    add(f"cnn004-{suffix}", "cnn004", R004, "004",
        f"Model {number}: {act_name}, dropout {'50%' if p else 'none'}", "cnn", "norm",
        Reported(total, where="report 004, table 2", note=note, per_class_accuracy=per_class), 1_365_930,
        arch_kwargs={"activation": act, "dropout": p},
        description=f"6-conv CNN (8-16-32-64-128-128, BN), dense 512-128-32-10, {act_name}, "
                    f"dropout {p} on the first two dense layers.")


# --- cifarzoo's own flagship (issues 8 and 15) ---------------------------------------------------------
# airnet (zoo/models/airbench.py): a whitened 3-group CNN from the fast-training literature, trained on the
# whole train split (val_fraction 0: no validation, the last epoch is kept). Since issue 15 it is
# airbench94_muon's recipe (Jordan): airbench94's widths 64/256/256, 8 epochs, batch 2000, the 3x3 filters
# stepped by Muon (orthogonalised Nesterov momentum, relative step 0.24, momentum 0.6), the rest by
# SGD-Nesterov 0.85, a linear decay with no warm-up. airbench94_muon sums its loss over the batch; the rates
# here are its 0.053 and 0.67 times the batch for the engine's mean loss, the decay per step
# lr * weight_decay = 0.004, the head's rate divided by (256 / 9)^2 for its different output scaling
# (head_scale). Muon takes airbench94_muon's 3 Newton-Schulz steps (the engine's default is 5): in fp32 they
# lifted the 3-seed mean from 90.56 % to 90.94 % at 8 epochs, in bf16 they kept it (90.86 -> 90.80 %) with a
# third of the spread. The 32/128/128 11-epoch SGD recipe this replaced reached 88.73 % in 0.31x the reference's
# time; this one 90.80 % (3 seeds, bf16) in 0.64x (README, "A flagship that beats that script").
from zoo.models import airbench  # noqa: E402, F401  (registers the flagship architecture `airnet`)

AIRNET_WIDTHS = (64, 256, 256)
add("airnet-fast", "airnet",
    Recipe(optimizer="muon", lr=1.66, momentum=0.85, weight_decay=0.00242, batch_size=2000, max_epochs=8,
           scheduler="onecycle", warmup_epochs=0.0, label_smoothing=0.2, augment="altfliptranslate",
           normalize="dataset", tta="flip+translate", val_fraction=0.0),
    "cifarzoo", f"AirNet {'/'.join(map(str, AIRNET_WIDTHS))}, Muon, 8 epochs, flip+translate TTA", "cnn", "aug",
    Reported(where="cifarzoo target: >= 90.7% on the JPEG copy in <= 0.8x the wall clock of airbench94's recipe "
                   "by a single-script loop (issue 15)",
             note="issue 15's target for this entry, not a measured number"),
    1_972_792,
    arch_kwargs={"widths": AIRNET_WIDTHS, "whiten_bias_epochs": 3, "filter_lr": 0.24, "filter_momentum": 0.6,
                 "filter_ns_steps": 3},
    description="Whitening-initialised 2x2 first conv (bias trained 3 epochs), three conv-pool-BN-GELU groups, "
                "Dirac init, Muon for the 3x3 filters (3 Newton-Schulz steps, as airbench94_muon), label "
                "smoothing 0.2, alternating flip + 2-px translate, flip+translate test-time augmentation.")
