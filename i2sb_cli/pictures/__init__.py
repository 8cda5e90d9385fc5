"""Pictures in and out: `files` reads a file into a [-1, 1] tensor and writes one back
(atomically, metadata kept), over `decode`, `encode` and `meta` (EXIF, ICC); `inputs` expands
the files, folders and globs a command works on and plans where each result goes."""

from .files import (
    ALPHA_FORMATS,
    FORMATS,
    Picture,
    atomic_write,
    encode_image,
    mask_from_alpha,
    read_image,
    read_mask,
    write_image,
)
from .inputs import PICTURE_EXTENSIONS, STDIO, InputFile, collect_inputs, plan_outputs
from .meta import read_metadata

__all__ = [
    "ALPHA_FORMATS",
    "FORMATS",
    "PICTURE_EXTENSIONS",
    "STDIO",
    "InputFile",
    "Picture",
    "atomic_write",
    "collect_inputs",
    "encode_image",
    "mask_from_alpha",
    "plan_outputs",
    "read_image",
    "read_mask",
    "read_metadata",
    "write_image",
]
