"""Images in, normalized arrays out: decoding, preprocessing, label names and data-set layouts."""
from importlib import resources

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, decode


def imagenet_classes() -> list[tuple[str, str]]:
    """(synset, name) for ImageNet-1k class indices 0..999 (sorted-synset order)."""
    text = resources.files(__package__).joinpath("imagenet_classes.tsv").read_text()
    return [tuple(line.split("\t", 1)) for line in text.splitlines() if line]


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "decode", "imagenet_classes"]
