"""Test-side name for the clip builders, which live in the package (the demo uses them too)."""

from streetwatch.footage import Paste, load_image, long_clip, solid_frames, still_scene, write_h264_clip

__all__ = ["Paste", "load_image", "long_clip", "solid_frames", "still_scene", "write_h264_clip"]
