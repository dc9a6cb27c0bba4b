"""Run a model over a whole video or a folder of images, safely: bounded memory, atomic outputs, resumable.

Video (:mod:`.video`): decode thread -> bounded queue -> model (this thread) -> bounded queue -> encode
thread. The output is written under a temporary name in the destination folder and renamed only when
complete; on any error or Ctrl-C both threads stop (a shared Event they poll), the temporary file is removed
and nothing exists under the final name.

Folder (:mod:`.folder`): images and videos one by one (a video as above), each written temp-then-rename; one
bad file fails alone; finished outputs are recorded in a small manifest (:mod:`.manifest`) in the destination
so a re-run skips exactly what is done and redoes the rest. :mod:`deblurtool.scale` runs the same pieces on a
Ray cluster.

The model is anything with ``deblur_array(img) -> img`` (HxWx3 uint8 or uint16 in, same shape and dtype out),
e.g. :class:`deblurtool.inference.Deblurrer`. Runs print nothing: they report through a :class:`Progress`
(the CLI's draws a progress bar, see :mod:`deblurtool.ui`; the default logs) and return a summary.
"""

from deblurtool.pipeline.folder import FolderSummary, check_folder_input, check_folder_paths, run_folder
from deblurtool.pipeline.manifest import MANIFEST_NAME
from deblurtool.pipeline.progress import ArrayModel, LogProgress, Progress
from deblurtool.pipeline.video import VideoSummary, check_video_input, check_video_paths, run_video

__all__ = [
    "MANIFEST_NAME",
    "ArrayModel",
    "FolderSummary",
    "LogProgress",
    "Progress",
    "VideoSummary",
    "check_folder_input",
    "check_folder_paths",
    "check_video_input",
    "check_video_paths",
    "run_folder",
    "run_video",
]
