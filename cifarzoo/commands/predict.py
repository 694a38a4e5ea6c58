"""`cifarzoo predict ENTRY IMAGE...`: classify image files with an entry's trained weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.command()
@click.argument("entry")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--weights", help="'published', 'local' or a .safetensors file [default: published, else local].")
@click.option("-k", "--top-k", type=click.IntRange(1, 10), default=3, show_default=True,
              help="Classes shown per image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image, one per line.")
def predict(entry: str, images: tuple[Path, ...], weights: str | None, top_k: int, as_json: bool) -> None:
    """Print the top-k classes and probabilities of each IMAGE (any size: center-cropped square, resized)."""
    import torch

    import zoo
    from benchmark.evaluate import tta_logits

    model = zoo.load(entry, weights)
    card, transform = model.cifarzoo, model.cifarzoo.transform()
    batch = torch.stack([transform(read_image(path)) for path in images])  # every file checked before any work
    with torch.inference_mode():
        probs = tta_logits(model, batch, card.tta).softmax(1)
    for path, p in zip(images, probs):
        values, indices = p.topk(top_k)
        top = [{"class": card.classes[i], "probability": round(v, 4)}
               for v, i in zip(values.tolist(), indices.tolist())]
        if as_json:
            click.echo(json.dumps({"image": str(path), "entry": entry, "top": top}))
        else:
            click.echo(f"{path}: " + ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in top))


def read_image(path: Path) -> Any:
    """The image as a 32x32 RGB PIL image (larger ones center-cropped to a square, then resized), or one
    sentence naming the file."""
    from PIL import Image, UnidentifiedImageError

    from zoo.errors import CifarzooError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except FileNotFoundError:
        raise CifarzooError(f"image {path} does not exist; check the path.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CifarzooError(f"image {path} cannot be read as an image ({type(err).__name__}); pass a PNG, JPEG "
                            "or another format Pillow reads.") from None
    if img.size != (32, 32):
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((32, 32), Image.Resampling.LANCZOS)
    return img
