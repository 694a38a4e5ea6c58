"""Click options shared by every command that reads data (kept free of heavy imports)."""

from __future__ import annotations

import click

data_option = click.option(
    "--data", "data", envvar="CIFARZOO_DATA", default="cifar10", show_default=True, metavar="SOURCE",
    help="Where the images come from: 'cifar10' (the official release, downloaded and md5-checked), "
    "'synthetic' (a small generated set for tests), or a path to cifar-10-python.tar.gz / "
    "cifar-10-binary.tar.gz or their extracted folders, Kaggle's train/ + trainLabels.csv, or an image-folder "
    "tree train/<class>/*, test/<class>/* as a folder, .zip, .tar or .tar.gz. Also read from $CIFARZOO_DATA.",
)
