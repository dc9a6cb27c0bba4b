"""Run a model over a whole video or a folder of images, safely: bounded memory, atomic outputs, resumable.

Video (:mod:`.video`): decode thread -> bounded queue -> model (this thread) -> bounded queue -> encode
thread. The output is written under a temporary name in the destination folder and renamed only when
complete; on any error or Ctrl-C both threads stop (a shared Event they poll), the temporary file is removed
and nothing exists under the final name.

Plan (:mod:`.plan`): a job is planned once, before the model loads (paths, one scan of the folder, encoder
settings, output folder writable and locked), then cut into units (an image, a video, or on Ray a frame range
of a long video), skipping what the manifest (:mod:`.manifest`) records as done. The local runner
(:mod:`.folder`) and the Ray runner (:mod:`deblurtool.scale`) consume the same plan and record outcomes
through it. Folder: images and videos one by one (a video as above), each written temp-then-rename; one bad
file fails alone; a re-run skips exactly what is done and redoes the rest.

The model is anything with ``deblur_array(img) -> img`` (HxWx3 uint8 or uint16 in, same shape and dtype out),
e.g. :class:`deblurtool.inference.Deblurrer`. Runs print nothing: they report through a :class:`Progress`
(the CLI's draws a progress bar, see :mod:`deblurtool.ui`; the default logs) and return a summary.
"""

from deblurtool.pipeline.folder import run_folder, run_local
from deblurtool.pipeline.manifest import MANIFEST_NAME
from deblurtool.pipeline.plan import FolderSummary, JobResult, Outcome, Plan, plan_folder, plan_video
from deblurtool.pipeline.progress import ArrayModel, LogProgress, Progress
from deblurtool.pipeline.video import VideoSummary, run_video

__all__ = [
    "MANIFEST_NAME",
    "ArrayModel",
    "FolderSummary",
    "JobResult",
    "LogProgress",
    "Outcome",
    "Plan",
    "Progress",
    "VideoSummary",
    "plan_folder",
    "plan_video",
    "run_folder",
    "run_local",
    "run_video",
]
