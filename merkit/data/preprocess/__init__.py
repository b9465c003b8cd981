"""Preprocessing of one clip: face crop → temporal normalisation to T frames → resize and colour.

Axis letters: T frames, H height, W width, C channels, S output side (square).

The input is what ``merkit.data.io.read_clip`` returns: RGB uint8 frames ``(T_in, H, W, 3)`` and their
absolute frame numbers ``(T_in,)`` (frame numbers as written in the annotation sheet, not list positions).
The output is uint8 ``(T, S, S, C)``, C = 1 (grey) or 3 (RGB). Every choice is a field of
:class:`PreprocessConfig`, whose ``asdict`` is part of the clip store's cache key.

Choices worth knowing:

- **Crop.** ``crop='auto'`` (default) decides per clip from the manifest's ``cropped`` flag: a clip whose
  frames are face crops (``cropped=True``: a dataset's cropped release, SynthME) is used as is, like
  ``'dataset'``; raw frames (``cropped=False``, or no flag: a hand-made manifest is taken as raw) get the
  Haar face box, like ``'haar'``. :attr:`PreprocessResult.crop_method` says which crop each clip got
  (``dataset``, ``haar``, ``center``, ``none``). ``crop='dataset'`` means the frames are already face crops (CASME II
  ``Cropped``, SAMM's and SMIC's cropped releases, SynthME): nothing is detected, the whole frame is resized. ``'haar'``
  runs an OpenCV Haar cascade on the *onset* frame only and holds that one box (plus a margin) for the whole clip,
  because per-frame boxes jitter by more than the micro-movement itself. ``'center'`` takes the centred
  square; ``'none'`` resizes the whole frame (aspect ratio not kept).
- **No face found** (``crop='haar'``, or ``'auto'`` on raw frames): :class:`PreprocessError` naming the sample, or with
  ``no_face='center'`` the centred square, recorded as ``crop_fallback=True`` in the
  :class:`PreprocessResult` (and in the clip store's index) and warned about.
- **Haar cascade file.** The pinned opencv-contrib 4.x wheel ships the cascade XML files in
  ``cv2.data.haarcascades`` (OpenCV 5's wheels no longer do, which is why the pin stays on 4.x); other
  installs are searched in the usual system locations (Debian's ``opencv-data`` package:
  ``/usr/share/opencv4/haarcascades``), and ``haar_cascade`` gives a path.
- **Temporal normalisation** resamples the frames by *frame number* (gaps in the numbering are bridged):
  linear interpolation over onset→offset (default, first and last output frames are exactly the onset and
  offset frames), onset→apex, a window of ``±apex_window`` frames around the apex, or TIM.
- **TIM** (temporal interpolation model, Zhou et al. 2011, used for micro-expressions by Pfister et al. 2011):
  the n frames are embedded on the path graph's Laplacian eigenvectors, a continuous curve
  ``y_k(t) = sin(πkt + π(n−k)/2n)``; the linear map from curve to frames is fitted exactly and the curve is
  sampled at T evenly spaced points. With the analytic eigenvectors this is a cosine (DCT-II) interpolation,
  which is what :func:`tim_weights` computes. First and last frames are reproduced exactly.
- **Clip shorter than T** (fewer source frames than T): by default (``short_clip='interpolate'``) frames are
  upsampled by the same interpolation (linear blends between neighbours); ``short_clip='error'`` raises.
  Fewer than 2 frames in the range always raises.
- **Missing apex** (SMIC; CASME II's ``/``): ``missing_apex='middle'`` (default) uses the frame number halfway
  between onset and offset, rounded down; ``'error'`` raises.
- Per-clip or per-dataset intensity normalisation is not done here (the store keeps uint8): see
  ``merkit.data.torch_dataset.ClipDataset(normalise=...)``.

Rooms: `config` (:class:`PreprocessConfig`, :class:`Box`, :class:`PreprocessResult`, the error), `temporal`
(the apex used, the sampling plan by frame number, TIM), `crop` (the Haar cascade and the one crop box of a
clip), `clip` (the whole clip: crop, resize, colour, and a region mask through the same transform).
"""

from merkit.data.preprocess.clip import output_shape, preprocess_clip, preprocess_clip_detailed, spatial_transform_mask
from merkit.data.preprocess.config import (
    COLORS,
    CROP_METHODS,
    CROPS,
    MISSING_APEX,
    NO_FACE,
    SHORT_CLIP,
    TEMPORALS,
    Box,
    PreprocessConfig,
    PreprocessError,
    PreprocessResult,
)
from merkit.data.preprocess.crop import clip_crop_box, detect_face_box, find_haar_cascade, resolve_crop
from merkit.data.preprocess.temporal import linear_sample_plan, resolve_apex, temporal_sample, tim_weights

__all__ = [
    "PreprocessConfig",
    "PreprocessError",
    "PreprocessResult",
    "Box",
    "CROP_METHODS",
    "CROPS",
    "COLORS",
    "TEMPORALS",
    "NO_FACE",
    "SHORT_CLIP",
    "MISSING_APEX",
    "resolve_crop",
    "preprocess_clip",
    "preprocess_clip_detailed",
    "resolve_apex",
    "temporal_sample",
    "tim_weights",
    "linear_sample_plan",
    "find_haar_cascade",
    "detect_face_box",
    "clip_crop_box",
    "spatial_transform_mask",
    "output_shape",
]
