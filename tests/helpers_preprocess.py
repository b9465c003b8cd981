"""Fixtures shared by the preprocessing, flow and store tests: synthetic frames and a tiny Haar cascade."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# OpenCV 5 wheels ship no cascade XML, so the tests write their own: one Haar feature (dark top half of a
# 24×24 window over a bright bottom half) in one boosted stage. It runs through the very same
# cv2.CascadeClassifier path as the real frontal-face cascade, and its answer is known: it fires on a
# dark-over-bright block and never on a flat image.
BLOCK_CASCADE_XML = """<?xml version="1.0"?>
<opencv_storage>
<cascade>
  <stageType>BOOST</stageType>
  <featureType>HAAR</featureType>
  <height>24</height>
  <width>24</width>
  <stageParams><maxWeakCount>1</maxWeakCount></stageParams>
  <featureParams><maxCatCount>0</maxCatCount></featureParams>
  <stageNum>1</stageNum>
  <stages>
    <_>
      <maxWeakCount>1</maxWeakCount>
      <stageThreshold>0.0</stageThreshold>
      <weakClassifiers>
        <_>
          <internalNodes>0 -1 0 0.1</internalNodes>
          <leafValues>-1. 1.</leafValues></_></weakClassifiers></_>
  </stages>
  <features>
    <_>
      <rects>
        <_>0 0 24 24 -1.</_>
        <_>0 12 24 12 2.</_></rects></_>
  </features>
</cascade>
</opencv_storage>
"""


def write_block_cascade(folder: Path) -> Path:
    path = Path(folder) / "block_cascade.xml"
    path.write_text(BLOCK_CASCADE_XML)
    return path


def block_frame(height: int, width: int, top: int, left: int, side: int = 40) -> np.ndarray:
    """RGB uint8 grey background with a dark-over-bright square ("face") at (top, left)."""
    frame = np.full((height, width, 3), 128, np.uint8)
    frame[top : top + side // 2, left : left + side] = 20
    frame[top + side // 2 : top + side, left : left + side] = 240
    return frame


def ramp_clip(numbers: np.ndarray, height: int = 16, width: int = 16) -> np.ndarray:
    """RGB uint8 frames whose every pixel equals the frame's number (mod 256): a linear ramp in time."""
    values = (np.asarray(numbers) % 256).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (len(values), height, width, 3)).copy()


def textured_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 frames of smooth random texture, different per frame."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        grey = cv2.GaussianBlur(rng.uniform(0, 255, (height, width)).astype(np.float32), (0, 0), 1.5)
        grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        frames.append(np.repeat(grey[..., None], 3, axis=-1))
    return np.stack(frames)
