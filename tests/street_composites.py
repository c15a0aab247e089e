"""Real objects set into the real street clip, for the static-object tests and the edge bench.

The street clip (assets/video/cvtrafficcam_street_parking.mp4: 75 s, 640x360, a fixed camera over a
residential street with parked cars and passing traffic) is decoded at 1 fps and played back and
forth (forward, then reversed, and so on: a ping-pong loop has no jump at the seams) for as long as
a test needs: minutes of real traffic, exposure drift and swaying trees. Into it go real crops of
the Hanoi market photo (assets/street/market_hanoi_goods_on_ground.jpg): a black bag, a white
plastic bag of greens and a grey crate of goods, each with its real texture and a soft shadow (the
ground under and beside it darkened through a blurred mask), and pedestrians (people cut from the
same photo with a soft-edged matte) who walk along the pavement past and in front of the goods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

STREET_CLIP = "video/cvtrafficcam_street_parking.mp4"
MARKET = "street/market_hanoi_goods_on_ground.jpg"
# Where the goods go in the 640x360 street view: the light concrete footway along the near kerb
# (bottom left) and the shaded far footway (top), dark reddish paving.
LIGHT_GROUND = (40, 318)  # top-left (x, y) of an object on the light footway
DARK_GROUND = (200, 42)  # ... on the dark footway
LIGHT_ZONE = [[0, 300], [230, 300], [230, 360], [0, 360]]
DARK_ZONE = [[180, 30], [340, 30], [340, 85], [180, 85]]
LIGHT_EAST = (150, 318)  # a second place on the light footway (at x 140 YOLOX takes the white bag for something)
DARK_EAST = (290, 45)  # ... and on the dark one
# A parked car is ~90 px long here (~20 px a metre): a walker at 1.3 m/s covers ~25 px a second.
WALK_PX_S = 25.0


def street_frames(assets_dir: Path, *, name: str = STREET_CLIP) -> list[np.ndarray]:
    """A clip (default the street clip) at 1 fps (the first frame at or after each whole second), BGR."""
    frames: list[np.ndarray] = []
    with av.open(str(assets_dir / name)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= len(frames):
                frames.append(frame.to_ndarray(format="bgr24"))
    return frames


def ping_pong(frames: Sequence[np.ndarray], seconds: int) -> Iterator[np.ndarray]:
    """`seconds` frames of the clip played forward, backward, forward...: no jump at the seams."""
    cycle = [*range(len(frames)), *range(len(frames) - 2, 0, -1)]
    for t in range(seconds):
        yield frames[cycle[t % len(cycle)]]


@dataclass(frozen=True)
class Cutout:
    """A real crop and its soft matte (float32 0..1, same height and width)."""

    image: np.ndarray
    matte: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def market_cutouts(assets_dir: Path) -> dict[str, Cutout]:
    """The goods and the walkers, cut from the market photo and scaled to the street view."""
    market = cv2.imread(str(assets_dir / MARKET))
    if market is None:
        raise FileNotFoundError(assets_dir / MARKET)
    return {
        "dark_bag": _cut(market[232:258, 426:452], scale=1.0),  # the black bag behind the vendor
        "crate": _cut(market[258:292, 408:456], scale=0.9),  # the grey crate in front of it (in shade: dark)
        # the white plastic bag of greens behind the vendor: the lightest goods in the photos (its
        # crates and basins stand in shade)
        "light_bag": _cut(market[205:245, 318:350], scale=1.0),
        "walker": _cut(market[150:248, 194:228], scale=0.45),  # a woman walking up the lane
    }


def matched_to_ground(cutout: Cutout, ground: np.ndarray, xy: tuple[int, int]) -> Cutout:
    """The cutout with its mean colour moved to the ground's under it: an object the same colour as
    the pavement that still shows its own shape and texture (a pavement-grey crate, a sack)."""
    x, y = xy
    w, h = cutout.size
    under = ground[y : y + h, x : x + w].reshape(-1, 3).astype(np.float32).mean(axis=0)
    own = cutout.image.reshape(-1, 3).astype(np.float32).mean(axis=0)
    return Cutout(np.clip(cutout.image + (under - own), 0, 255).astype(np.uint8), cutout.matte)


def car_cutout(frame: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> Cutout:
    """A real car cut from a street frame with a little road around it, scaled to `size` (w, h)."""
    x1, y1, x2, y2 = box
    image = cv2.resize(frame[y1:y2, x1:x2], size, interpolation=cv2.INTER_AREA)
    matte = np.zeros((size[1], size[0]), np.float32)
    cv2.rectangle(matte, (2, 2), (size[0] - 3, size[1] - 3), 1.0, -1)
    return Cutout(image, cv2.GaussianBlur(matte, (0, 0), 1.5))


def _cut(crop: np.ndarray, *, scale: float) -> Cutout:
    image = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    matte = np.zeros((h, w), np.float32)
    cv2.ellipse(matte, (w // 2, h // 2), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1.0, -1)
    matte = cv2.GaussianBlur(matte, (0, 0), 1.0)  # a soft edge, as a real outline blurs in the lens
    return Cutout(image, matte)


@dataclass(frozen=True)
class Placed:
    """A cutout at top-left `xy` for start_s <= t < end_s; `shadow`: darken the ground under it."""

    cutout: Cutout
    xy: tuple[int, int]
    start_s: float
    end_s: float
    shadow: bool = True


@dataclass(frozen=True)
class Walk:
    """A walker crossing from x0 to x1 (top at y) between start_s and end_s, repeated every period_s."""

    cutout: Cutout
    x0: int
    x1: int
    y: int
    start_s: float
    end_s: float
    period_s: float

    def at(self, t: float) -> tuple[int, int] | None:
        phase = (t - self.start_s) % self.period_s
        span = abs(self.x1 - self.x0) / WALK_PX_S
        if t < self.start_s or phase > span:
            return None
        x = self.x0 + (self.x1 - self.x0) * phase / span
        return round(x), self.y


def composite(
    frames: Iterator[np.ndarray], *, placed: Sequence[Placed] = (), walks: Sequence[Walk] = (),
    shade: tuple[tuple[int, int, int, int], float, float] | None = None,
) -> Iterator[np.ndarray]:
    """Each frame with the goods, their shadows and the walkers in it (t = frame index, s).

    shade: ((x1, y1, x2, y2), factor, from_s): a soft shadow or lighting change alone, no object.
    """
    for t, frame in enumerate(frames):
        out = frame.astype(np.float32)
        if shade is not None and t >= shade[2]:
            _darken(out, shade[0], shade[1])
        for item in placed:
            if item.start_s <= t < item.end_s:
                if item.shadow:
                    _cast_shadow(out, item)
                _blend(out, item.cutout, item.xy)
        for walk in walks:
            at = walk.at(t)
            if at is not None:
                _blend(out, walk.cutout, at)
        yield np.clip(out, 0, 255).astype(np.uint8)


def _blend(out: np.ndarray, cutout: Cutout, xy: tuple[int, int]) -> None:
    x, y = xy
    h = min(cutout.image.shape[0], out.shape[0] - y)
    w = min(cutout.image.shape[1], out.shape[1] - x)
    if h <= 0 or w <= 0 or x < 0 or y < 0:
        return
    a = cutout.matte[:h, :w, None]
    region = out[y : y + h, x : x + w]
    region[:] = a * cutout.image[:h, :w] + (1 - a) * region


def _cast_shadow(out: np.ndarray, item: Placed) -> None:
    """A soft shadow down and to the right of the object (the low winter sun of the clip)."""
    w, h = item.cutout.size
    x, y = item.xy[0] + w // 4, item.xy[1] + h // 3
    _darken(out, (x, y, x + w, y + h), 0.65)


def _darken(out: np.ndarray, box: tuple[int, int, int, int], factor: float) -> None:
    x1, y1, x2, y2 = box
    mask = np.zeros(out.shape[:2], np.float32)
    cv2.rectangle(mask, (x1, y1), (x2, y2), 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, (x2 - x1) / 8))
    out *= 1 - (1 - factor) * mask[:, :, None]
