"""Media input/output: videos through PyAV (threaded decode and encode), still images through OpenCV."""

from __future__ import annotations

from deblurtool.media.image_io import (
    IMAGE_SUFFIXES,
    ImageData,
    merge_from_model,
    read_image,
    split_for_model,
    write_image,
)
from deblurtool.media.video_probe import VIDEO_SUFFIXES
from deblurtool.media.video_reader import DecodedFrame, VideoInfo, VideoReader
from deblurtool.media.video_writer import VideoWriter, choose_pix_fmt

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DecodedFrame",
    "ImageData",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "choose_pix_fmt",
    "merge_from_model",
    "read_image",
    "split_for_model",
    "write_image",
]
