"""Image I/O and data sets (float32 RGB tensors in [0, 1], ``[3, H, W]`` per image)."""

from semcom.data.datasets import (
    IMAGE_EXTENSIONS,
    SKIMAGE_SAMPLES,
    ImageDataset,
    ImageFolder,
    RepeatedCrops,
    SampleImages,
    cache_images,
    collate_images,
    dataset_signature,
    get_dataset,
    image_sizes,
    list_datasets,
    load_images,
    split_dataset,
)
from semcom.data.io import ImageReadError, image_size, load_image, save_image, to_uint8

__all__ = [
    "IMAGE_EXTENSIONS",
    "SKIMAGE_SAMPLES",
    "ImageDataset",
    "ImageFolder",
    "ImageReadError",
    "RepeatedCrops",
    "SampleImages",
    "cache_images",
    "collate_images",
    "dataset_signature",
    "get_dataset",
    "image_size",
    "image_sizes",
    "list_datasets",
    "load_image",
    "load_images",
    "save_image",
    "split_dataset",
    "to_uint8",
]
