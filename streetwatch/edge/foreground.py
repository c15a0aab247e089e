"""Long-lived static foreground: things left on the pavement that no detector class covers.

One `StaticForeground` per fixed camera, fed the sampled frames (~1 fps). It keeps two running
average backgrounds of a downscaled, blurred frame (cv2.accumulateWeighted):

- fast background, time constant `fast_tau_s` (20 s): absorbs anything that stops moving. An
  object 100 grey levels off the background blends below the 25-level threshold after
  fast_tau_s * ln(100 / 25) ~ 28 s.
- slow background, time constant `slow_tau_s` (600 s), updated only where the frame matches it
  (selective update), so a parked object never leaks into it while it stays; pixels foreground
  for longer than `absorb_after_s` (2 h) are copied in: a lasting change of the scene becomes
  background.

A pixel is *static* when it is foreground against the slow background and background against
the fast one, and has been slow-foreground for at least `min_static_s`. Connected static pixels
(after morphological opening and closing) large enough are reported as `StaticRegion`s with
`static_since_t`, the median time their pixels left the slow background: the object's arrival.

Robustness: a global gain (median ratio of frame to slow background over background pixels,
on every 4th row and column) is divided out before comparing, so camera exposure changes and
the slow drift of daylight are not foreground; the threshold is max(diff_threshold, noise_k *
robust noise sigma, from the same sparse grid), so sensor noise is not either; a change that
only scales brightness and keeps the colour (a shadow falling across the pavement, a street
lamp) is lighting, not an object (the brightness/colour distortion test MOG2 uses for shadows;
a mid-grey object on grey pavement can pass for a shadow, a known limit); a ghost (an object
that was in the background at start-up and has left) is recognised because its outline has
edges in the slow background but not in the frame, and is healed instead of reported.

Learning rates are derived from the elapsed stream time between samples, alpha = 1 - exp(-dt/tau),
so behaviour is set in seconds and holds at any sample_fps, with jitter or dropped frames (at
sample_fps 1: alpha 0.049 fast, 0.0017 slow; at 5 fps: 0.0100 and 0.00033). For the first
`warmup_s` the slow background is the plain mean of the frames seen and nothing is reported.

Cost (it runs every few seconds on every camera that watches for goods): only the downscale and
blur, the two background differences, the grey images the medians sample and the two running
averages touch the whole view, or only the watched box (the goods zones plus margins) when one
is given. The shadow test, the arrival times and the static mask work on the slow-
foreground candidates alone (a few percent of the view), labelling and the ghost test inside
the box around the static pixels; each gives what the whole-frame computation gives (centroids
to ~1e-13 px; tests/edge/test_foreground.py compares them).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from streetwatch.edge.config import RulesConfig
from streetwatch.edge.picture import downscale, scaled_size

log = logging.getLogger(__name__)

Window = tuple[slice, slice]  # (rows, columns) of an image

# The ghost test reads a 5x5 morphological gradient of the blob (2 px beyond it) and a 3x3 Sobel
# around those pixels (1 px more): inside a box this much larger than the blob it sees exactly
# what it would see on the whole frame.
_GHOST_MARGIN = 3

_WARMUP_FRAMES = 15  # the warm-up median is taken over at most this many of the latest frames
_GAUSS_5 = cv2.getGaussianKernel(5, 0, ktype=cv2.CV_32F)  # what cv2.GaussianBlur((5, 5), 0) uses


@dataclass(frozen=True)
class ForegroundParams:
    """Time constants in stream seconds; sizes in original frame pixels. The edge config's
    `rules.foreground` (config.ForegroundConfig) sets these per camera."""

    work_width: int = 384
    fast_tau_s: float = 20.0
    slow_tau_s: float = 600.0
    warmup_s: float = 30.0  # slow background is a plain running mean this long; nothing reported
    min_static_s: float = 10.0
    absorb_after_s: float = 7200.0
    diff_threshold: float = 25.0  # grey levels, max over B, G, R of the blurred difference
    noise_k: float = 4.0
    min_area_px: float = 900.0
    reset_fraction: float = 0.6  # fast-foreground share of the frame that means "the view changed"
    ghost_edge_ratio: float = 0.6
    shade_range: tuple[float, float] = (0.45, 1.3)  # brightness ratios a shadow or light may cause
    # With a watched box (the goods zones), the model works on that box grown by this fraction of
    # the frame on each side, and twice that upwards (goods stand up from the ground the zone marks).
    watch_margin: float = 0.1
    # Texture evidence (see the module docstring): the smallest change of the log-brightness
    # gradient (Sobel 3x3 of ln(grey + 16), per pixel) that is a change of shape, not of light.
    # False turns it off: the colour-only model of before (kept for the edge bench's A/B).
    texture: bool = True
    texture_threshold: float = 0.3
    shape_tolerance: float = 4.0  # grey levels of colour, beyond a pure brightness change, a shadow's edge never has

    def __post_init__(self) -> None:
        if self.work_width < 64:
            raise ValueError(f"work_width: expected >= 64 px, got {self.work_width}")
        if not 0 < self.fast_tau_s < self.slow_tau_s:
            raise ValueError(
                f"fast_tau_s, slow_tau_s: expected 0 < fast < slow, got {self.fast_tau_s}, {self.slow_tau_s}"
            )
        if self.watch_margin < 0:
            raise ValueError(f"watch_margin: expected >= 0, got {self.watch_margin}")
        if not 0 < self.shade_range[0] <= 1 <= self.shade_range[1]:
            raise ValueError(f"shade_range: expected (low <= 1, high >= 1), got {self.shade_range}")
        if self.texture_threshold <= 0:
            raise ValueError(f"texture_threshold: expected > 0, got {self.texture_threshold}")


def foreground_params(rules: RulesConfig) -> ForegroundParams:
    """The model's parameters from a camera's rules (`rules.foreground`, `static_min_area_px`)."""
    c = rules.foreground
    return ForegroundParams(
        work_width=c.work_width, fast_tau_s=c.fast_tau_s, slow_tau_s=c.slow_tau_s, warmup_s=c.warmup_s,
        min_static_s=c.min_static_s, absorb_after_s=c.absorb_after_s, diff_threshold=c.diff_threshold,
        noise_k=c.noise_k, min_area_px=float(rules.static_min_area_px), texture=c.texture,
        texture_threshold=c.texture_threshold, shade_range=(c.shade_min_ratio, ForegroundParams.shade_range[1]),
    )


@dataclass(frozen=True)
class StaticRegion:
    """A long-lived static foreground blob. box: (x1, y1, x2, y2) in original frame pixels;
    area_px: foreground pixels in original-frame units; centroid: (x, y) of those pixels;
    static_since_t: stream time its pixels left the background (the object's arrival)."""

    box: tuple[float, float, float, float]
    area_px: float
    centroid: tuple[float, float]
    static_since_t: float


def _alpha(dt: float, tau: float) -> float:
    return 1.0 - math.exp(-dt / tau)


class StaticForeground:
    """Per-camera state; call update() with each sampled frame in stream-time order.

    watch: (x1, y1, x2, y2) in frame pixels, the only part of the view whose static regions
    matter (the camera's goods zones); the model then works on that box plus margins alone, which
    on a typical kerb camera is a third to a half of the view. None watches the whole view.
    """

    def __init__(
        self,
        camera_id: str,
        params: ForegroundParams | None = None,
        *,
        watch: tuple[float, float, float, float] | None = None,
    ) -> None:
        if watch is not None and not (watch[0] < watch[2] and watch[1] < watch[3]):
            raise ValueError(f"camera {camera_id}: watch: expected (x1, y1, x2, y2) with x1 < x2, y1 < y2, got {watch}")
        self.camera_id = camera_id
        self.params = params or ForegroundParams()
        self.watch = watch
        self._offset = (0, 0)  # top-left of the worked part, in work pixels
        self._fast: np.ndarray | None = None
        self._slow: np.ndarray | None = None
        self._since = np.empty((0, 0), np.float32)  # time a pixel became slow-foreground, NaN if not
        self._fg_slow = np.empty((0, 0), bool)
        self._t_start = 0.0
        self._t_prev = 0.0
        self._scale = 1.0
        self._noise: float | None = None  # smoothed noise sigma (grey levels); kept across restarts
        self._last: list[StaticRegion] = []
        self._first: list[np.ndarray] = []  # the warm-up's frames (texture model), for their median

    def reset(self) -> None:
        """Forget the backgrounds (the next frame starts a new warm-up)."""
        self._fast = self._slow = None
        self._last = []

    def update(
        self, image_bgr: np.ndarray, t: float, *, frame_size: tuple[int, int] | None = None
    ) -> list[StaticRegion]:
        """Feed one frame (H, W, 3) uint8 BGR at stream time t; return the current static regions.

        frame_size: (width, height) of the camera frame when `image_bgr` is a smaller view of it
        (boxes and areas are always in camera-frame pixels).
        """
        small = self._prepare(image_bgr, frame_size or (image_bgr.shape[1], image_bgr.shape[0]))
        if self._slow is None or self._fast is None or self._slow.shape != small.shape:
            self._start(small, t)
            return []
        dt = t - self._t_prev
        if dt <= 0:
            log.debug("camera %s: frame at t=%.3f not after %.3f, skipped", self.camera_id, t, self._t_prev)
            return list(self._last)  # a repeated frame changes nothing
        self._t_prev = t
        frame = small / self._gain(small)
        threshold = self._threshold(frame, self._fast, dt)
        texture = self._texture(frame) if self.params.texture else None
        fg_slow = self._slow_foreground(frame, threshold, texture)
        fg_fast = _difference(frame, self._fast) > threshold
        if texture is not None:
            fg_fast |= texture.changed_fast
        changed = np.count_nonzero(fg_fast) / fg_fast.size  # a bool mean() converts to float first
        if changed > self.params.reset_fraction:
            log.info("camera %s: %.0f%% of the view changed at t=%.1f; restarting the backgrounds",
                     self.camera_id, 100 * changed, t)
            self._start(small, t)
            return []
        at = np.flatnonzero(fg_slow)  # usually a few percent of the view: the steps below touch only these
        self._mark_since(at, t)
        self._fg_slow = fg_slow
        self._learn(frame, at, t, dt)
        if t - self._t_start < self.params.warmup_s:
            return []
        static = self._static(at, fg_fast, t)
        self._last = self._regions(frame, static, t) if static.any() else []
        return list(self._last)

    def _prepare(self, image_bgr: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(
                f"camera {self.camera_id}: expected an (H, W, 3) BGR image, got shape {image_bgr.shape}"
            )
        size = scaled_size(*frame_size, min(self.params.work_width, image_bgr.shape[1]))
        self._scale = frame_size[0] / size[0]
        image, size = self._watched(image_bgr, size)
        small = downscale(image, size) if size != (image.shape[1], image.shape[0]) else image
        # the same 5x5 Gaussian as cv2.GaussianBlur on a float32 copy, bit for bit, but filtering
        # the uint8 pixels straight into float32 skips the conversion pass
        return np.asarray(cv2.sepFilter2D(small, cv2.CV_32F, _GAUSS_5, _GAUSS_5, borderType=cv2.BORDER_REFLECT_101))

    def _watched(self, image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """The part of `image` the model works on, and its size in work pixels (the whole view at
        `size` when nothing is watched); remembers its offset for the region boxes."""
        if self.watch is None:
            self._offset = (0, 0)
            return image, size
        width, height = size
        s, m = self._scale, self.params.watch_margin
        x1 = max(0, math.floor(self.watch[0] / s - m * width))
        y1 = max(0, math.floor(self.watch[1] / s - 2 * m * height))
        x2 = min(width, math.ceil(self.watch[2] / s + m * width))
        y2 = min(height, math.ceil(self.watch[3] / s + m * height))
        if x2 - x1 < 8 or y2 - y1 < 8:  # the watched box lies outside this view: watch it whole
            x1, y1, x2, y2 = 0, 0, width, height
        self._offset = (x1, y1)
        fx, fy = image.shape[1] / width, image.shape[0] / height
        crop = image[round(y1 * fy) : round(y2 * fy), round(x1 * fx) : round(x2 * fx)]
        return crop, (x2 - x1, y2 - y1)

    def _start(self, small: np.ndarray, t: float) -> None:
        self._fast, self._slow = small.copy(), small.copy()
        self._first = [small.copy()]
        self._since = np.full(small.shape[:2], np.nan, np.float32)
        self._fg_slow = np.zeros(small.shape[:2], bool)
        self._t_start = self._t_prev = t
        self._last = []

    def _texture(self, frame: np.ndarray) -> _Texture:
        """Where the frame's shape differs from each background's: the log-brightness gradients
        compared (a change of light multiplies brightness, which leaves them as they were)."""
        assert self._slow is not None and self._fast is not None
        now, slow, fast = _log_gradient(frame), _log_gradient(self._slow), _log_gradient(self._fast)
        limit = self.params.texture_threshold**2  # the changes are squared
        return _Texture(
            now=now,
            slow=slow,
            changed_slow=_gradient_change(now, slow) > limit,
            changed_fast=_gradient_change(now, fast) > limit,
        )

    def _slow_foreground(self, frame: np.ndarray, threshold: float, texture: _Texture | None = None) -> np.ndarray:
        """Pixels that differ from the slow background (in colour over the threshold, or in shape:
        `texture`) and are not just lighting.

        Only those candidates (usually a few percent of the view) need the shadow test, so it
        runs on them alone, gathered into an (N, 1, 3) image: per-pixel operations give the same
        answer as on the whole frame at a fraction of the cost.
        """
        assert self._slow is not None
        candidate = _difference(frame, self._slow) > threshold
        if texture is not None:
            candidate |= texture.changed_slow
        at = np.flatnonzero(candidate)  # flat indices + np.take: several times cheaper than a boolean gather
        if at.size == 0:
            return candidate
        shade, ratio, residual = _shading_ratio(
            _pixels(frame, at), _pixels(self._slow, at),
            tolerance=0.5 * threshold, ratio_range=self.params.shade_range,
        )
        lighting = shade[:, 0]
        if texture is not None:
            # the inside of a shadow: darker or brighter, colour and pattern kept
            umbra = lighting & (np.abs(ratio[:, 0] - 1) > 0.1) & ~texture.changed_slow.reshape(-1)[at]
            lighting &= ~self._shape_changed(texture, at, umbra=umbra, residual=residual[:, 0])
        candidate.reshape(-1)[at[lighting]] = False
        return candidate

    def _shape_changed(
        self, texture: _Texture, at: np.ndarray, *, umbra: np.ndarray, residual: np.ndarray
    ) -> np.ndarray:
        """(N,) bool for the candidates `at` whose colour could be lighting: is the change one of shape?

        Away from any shadow (a pavement-grey crate on pavement) a changed gradient is. Next to the
        inside of one (`umbra`: candidates shaded with their pattern kept) it may be the shadow's
        own edge, so there only lost texture counts (a shadow keeps the ground's pattern, while an
        object, a dark grey bag on light tiles, hides it), or a colour a shadow's edge cannot make:
        `residual` (grey levels left once brightness is scaled) over shape_tolerance.
        """
        near = np.zeros(texture.changed_slow.shape, np.uint8)
        near.reshape(-1)[at[umbra]] = 1
        near = cv2.dilate(near, np.ones((7, 7), np.uint8)).reshape(-1)[at] > 0
        changed = texture.changed_slow.reshape(-1)[at]
        before = _magnitude_at(texture.slow, at)
        now = _magnitude_at(texture.now, at)
        lost = (before > self.params.texture_threshold) & (now < 0.5 * before)
        tinted = residual > max(self.params.shape_tolerance, 2.0 * (self._noise or 0.0))
        return np.asarray(changed & (~near | lost | tinted), dtype=bool)

    def _gain(self, small: np.ndarray) -> float:
        """Global brightness ratio of the frame to the slow background, over background pixels."""
        assert self._slow is not None
        ref = _sparse(_grey(self._slow))
        usable = (ref > 20) & ~_sparse(self._fg_slow)
        if np.count_nonzero(usable) < 100:
            return 1.0
        ratio = _sparse(_grey(small))[usable] / ref[usable]
        return min(max(_median(ratio), 0.2), 5.0)

    def _threshold(self, frame: np.ndarray, fast: np.ndarray, dt: float) -> float:
        """diff_threshold, raised for noisy sensors to noise_k * sigma.

        sigma: 1.4826 * MAD of the grey frame - fast background difference, smoothed over a
        minute. A frame whose estimate jumps over 3x the running value is a scene change, not
        noise, and leaves it alone (else a changed view would raise the threshold above itself).
        """
        diff = _sparse(_grey(frame)) - _sparse(_grey(fast))
        sigma = 1.4826 * _median(np.abs(diff - _median(diff)))
        if self._noise is None:
            self._noise = sigma
        elif sigma < 3 * self._noise + 1:
            self._noise += _alpha(dt, 60.0) * (sigma - self._noise)
        return max(self.params.diff_threshold, self.params.noise_k * self._noise)

    def _mark_since(self, at: np.ndarray, t: float) -> None:
        """since: t where a pixel became slow-foreground, kept while it stays, NaN elsewhere.

        at: flat indices of this frame's slow-foreground pixels. since is finite only where the
        previous frame's were, so clearing those and writing these covers every change.
        """
        flat = self._since.reshape(-1)
        since = flat[at]
        flat[np.flatnonzero(self._fg_slow)] = np.nan
        flat[at] = np.where(np.isnan(since), t, since)

    def _static(self, at: np.ndarray, fg_fast: np.ndarray, t: float) -> np.ndarray:
        """uint8 mask of the static pixels: slow-foreground (at), not fast-foreground, for min_static_s."""
        aged = (t - self._since.reshape(-1)[at]) >= self.params.min_static_s
        static = np.zeros(fg_fast.shape, np.uint8)
        static.reshape(-1)[at[aged & ~fg_fast.reshape(-1)[at]]] = 1
        return static

    def _learn(self, frame: np.ndarray, at: np.ndarray, t: float, dt: float) -> None:
        """Update both backgrounds; at: flat indices of the slow-foreground pixels (kept out of the
        slow one)."""
        assert self._slow is not None and self._fast is not None
        p = self.params
        cv2.accumulateWeighted(frame, self._fast, _alpha(dt, p.fast_tau_s))
        elapsed = t - self._t_start
        if elapsed < p.warmup_s:
            self._warm_up(frame, elapsed, dt)
            return
        self._first.clear()
        # selective update: a masked accumulateWeighted is ~6x slower than a plain one, so update
        # every pixel and put the (few) foreground pixels back
        # (the texture model keeps the pixels around them too: the background's gradient at an
        # object's edge is made of its neighbours, which must not learn the object either)
        frozen = self._around(at) if p.texture and at.size else at
        kept = _pixels(self._slow, frozen)
        cv2.accumulateWeighted(frame, self._slow, _alpha(dt, p.slow_tau_s))
        self._slow.reshape(-1, 3)[frozen] = kept[:, 0]
        old = at[(t - self._since.reshape(-1)[at]) > p.absorb_after_s]  # since is NaN off the foreground
        if old.size:
            log.info("camera %s: %d px static for over %.0f s absorbed into the background",
                     self.camera_id, int(old.size * self._scale**2), p.absorb_after_s)
            mask = np.zeros(self._since.shape, bool)
            mask.reshape(-1)[old] = True
            self._heal(frame, mask)

    def _around(self, at: np.ndarray) -> np.ndarray:
        """Flat indices of the pixels `at` and those within 2 px of them."""
        mask = np.zeros(self._since.shape, np.uint8)
        mask.reshape(-1)[at] = 1
        return np.flatnonzero(cv2.dilate(mask, np.ones((5, 5), np.uint8)))

    def _warm_up(self, frame: np.ndarray, elapsed: float, dt: float) -> None:
        """The slow background while it forms: the plain mean of the frames seen, or (the texture
        model) their per-pixel median, which a car or a walker passing in some of them leaves out."""
        assert self._slow is not None
        if not self.params.texture:  # running mean of the first frames: transients average out
            cv2.accumulateWeighted(frame, self._slow, max(dt / (elapsed + dt), _alpha(dt, self.params.slow_tau_s)))
            return
        self._first.append(frame.copy())
        del self._first[:-_WARMUP_FRAMES]
        self._slow[:] = np.median(np.stack(self._first), axis=0)

    def _heal(self, frame: np.ndarray, mask: np.ndarray, window: Window = (slice(None), slice(None))) -> None:
        """Copy the frame into the slow background where `mask` (which covers `window`) is set."""
        assert self._slow is not None
        self._slow[window][mask] = frame[window][mask]
        self._since[window][mask] = np.nan

    def _regions(self, frame: np.ndarray, static: np.ndarray, t: float) -> list[StaticRegion]:
        """static: uint8 0/1 mask of the static pixels."""
        assert self._slow is not None
        mask = _blobs(static, texture=self.params.texture)
        count, labels, stats, centroids = _components(mask)
        s = self._scale
        ox, oy = self._offset
        regions = []
        for label in range(1, count):
            area = float(stats[label, cv2.CC_STAT_AREA]) * s * s
            if area < self.params.min_area_px:
                continue
            x, y, w, h = (int(v) for v in stats[label, :4])
            # every per-blob step works inside the blob's box (plus the ghost test's reach), not the frame
            window = _window((x, y, w, h), labels.shape, _GHOST_MARGIN)
            blob = labels[window] == label
            if _is_ghost(frame[window], self._slow[window], blob, self.params.ghost_edge_ratio):
                log.info("camera %s: ghost of a departed object healed at t=%.1f", self.camera_id, t)
                self._heal(frame, blob, window)
                continue
            since = self._since[window][blob]
            regions.append(
                StaticRegion(
                    box=((ox + x) * s, (oy + y) * s, (ox + x + w) * s, (oy + y + h) * s),
                    area_px=area,
                    centroid=((ox + float(centroids[label, 0])) * s, (oy + float(centroids[label, 1])) * s),
                    static_since_t=float(np.nanmedian(since)) if np.isfinite(since).any() else t,
                )
            )
        return regions


@dataclass(frozen=True)
class _Texture:
    """Log-brightness gradients of the frame and the slow background, and where the frame's
    differ from the slow and from the fast background's."""

    now: Gradient
    slow: Gradient
    changed_slow: np.ndarray
    changed_fast: np.ndarray


Gradient = tuple[np.ndarray, np.ndarray]  # Sobel x and y, (H, W) float32 each


def _log_gradient(image: np.ndarray) -> Gradient:
    """Sobel x, y of ln(grey + 16): unchanged by a gain (exposure, a shadow's interior); the
    offset keeps dark pixels' noise from dominating."""
    grey = _grey(image) + 16.0
    cv2.log(grey, grey)
    return cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)


def _gradient_change(now: Gradient, before: Gradient) -> np.ndarray:
    """How much of `now`'s gradient is new structure, squared: the part not along `before`'s
    gradient (an edge that only got stronger or weaker, as exposure and flare make a shadow's edge,
    is not), or all of it where `before` was flat or pointed the other way."""
    gx, gy = now
    bx, by = before
    norm = cv2.add(cv2.multiply(bx, bx), cv2.multiply(by, by))
    dot = cv2.add(cv2.multiply(gx, bx), cv2.multiply(gy, by))
    along = cv2.max(cv2.divide(dot, cv2.add(norm, 1e-3)), 0.0)  # now = along * before + the rest
    rx = cv2.subtract(gx, cv2.multiply(along, bx))
    ry = cv2.subtract(gy, cv2.multiply(along, by))
    return np.asarray(cv2.add(cv2.multiply(rx, rx), cv2.multiply(ry, ry)))


def _magnitude_at(gradient: Gradient, at: np.ndarray) -> np.ndarray:
    """|gradient| at the flat indices `at`."""
    x, y = (np.take(part.reshape(-1), at) for part in gradient)
    return np.asarray(np.sqrt(x * x + y * y))


def _blobs(static: np.ndarray, *, texture: bool) -> np.ndarray:
    """The static mask cleaned into blobs: specks opened away, gaps closed. Shape evidence is
    sparse (an object's edges and pattern), so with it the gaps are closed first."""
    if texture:
        mask = cv2.morphologyEx(static, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        return np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)))
    mask = cv2.morphologyEx(static, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)))


def _window(box: tuple[int, int, int, int], shape: tuple[int, ...], margin: int) -> Window:
    """Slices of the (x, y, w, h) box grown by `margin` px on each side, clipped to the image."""
    x, y, w, h = box
    rows = slice(max(0, y - margin), min(shape[0], y + h + margin))
    return rows, slice(max(0, x - margin), min(shape[1], x + w + margin))


def _is_ghost(frame: np.ndarray, slow: np.ndarray, blob: np.ndarray, edge_ratio: float) -> bool:
    """A departed object leaves its outline in the slow background, not in the frame."""
    now, before = _outline_edges(frame, slow, blob)
    return bool(now < edge_ratio * before)


def _outline_edges(frame: np.ndarray, slow: np.ndarray, blob: np.ndarray) -> tuple[float, float]:
    """Mean edge strength in the frame and in the slow background along the blob's outline."""
    ring = cv2.morphologyEx(blob.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)) > 0
    return float(_edge_strength(frame)[ring].mean()), float(_edge_strength(slow)[ring].mean())


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """cv2.connectedComponentsWithStats(mask, connectivity=8), labelling only the box around the
    set pixels (usually a small part of the view; labelling costs per pixel scanned).

    The box starts on even coordinates: OpenCV labels 2x2 blocks in scan order, so on the same
    block grid the labels come out numbered as on the whole frame. labels is full size.
    """
    x, y, w, h = cv2.boundingRect(mask)
    labels = np.zeros(mask.shape, np.int32)
    if w == 0:  # nothing set (and OpenCV crashes on an empty image)
        return 1, labels, np.zeros((1, 5), np.int32), np.zeros((1, 2))
    x0, y0 = x - x % 2, y - y % 2
    crop = mask[y0 : y + h, x0 : x + w]
    count, crop_labels, stats, centroids = cv2.connectedComponentsWithStats(crop, connectivity=8)
    labels[y0 : y + h, x0 : x + w] = crop_labels
    stats[1:, cv2.CC_STAT_LEFT] += x0
    stats[1:, cv2.CC_STAT_TOP] += y0
    centroids[1:] += (x0, y0)
    return count, labels, stats, centroids


def _pixels(image: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The (H, W, 3) image's pixels at flat indices `at`, as an (N, 1, 3) image OpenCV can take."""
    return np.take(image.reshape(-1, 3), at, axis=0)[:, None]


def _difference(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per-pixel max over channels of |frame - background| (colour changes count, not only luma)."""
    diff = cv2.absdiff(frame, background)
    # strided channel views: ~6x cheaper than cv2.split's three copies and two cv2.max calls
    out = np.maximum(diff[..., 0], diff[..., 1])
    return np.maximum(out, diff[..., 2], out=out)


def _shading(
    frame: np.ndarray, background: np.ndarray, *, tolerance: float, ratio_range: tuple[float, float]
) -> np.ndarray:
    """Pixels whose change is only a brightness factor (a shadow, a lamp): frame ~ r * background
    with r in ratio_range and the colour left over below tolerance (the brightness/colour
    distortion split used by MOG2's shadow test). Such pixels are lighting, not objects."""
    return _shading_ratio(frame, background, tolerance=tolerance, ratio_range=ratio_range)[0]


def _shading_ratio(
    frame: np.ndarray, background: np.ndarray, *, tolerance: float, ratio_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_shading, the brightness ratio r of each pixel and the colour left over once scaled by r."""
    dot = cv2.transform(cv2.multiply(frame, background), np.ones((1, 3), np.float32))
    norm = cv2.transform(cv2.multiply(background, background), np.ones((1, 3), np.float32))
    ratio = dot / np.maximum(norm, 1.0)
    residual = _difference(frame, background * ratio[:, :, None])
    shade = (
        (ratio >= ratio_range[0])
        & (ratio <= ratio_range[1])
        & (residual < tolerance)
        & (_grey(background) > 30)
    )
    return shade, ratio, residual


def _sparse(image: np.ndarray) -> np.ndarray:
    """Every 4th row and column (1/16 of the pixels, ~5,000 at work_width 384): plenty for a
    global median. A view: greying the whole frame first is cheaper than copying a strided
    colour subsample out."""
    return image[::4, ::4]


def _median(values: np.ndarray) -> float:
    """np.median of a non-empty array (flattened), same value: one partition and a max instead of
    np.median's general path (NaN check, two-point partition, mean), several times cheaper on
    ~5,000 values."""
    half = values.size // 2
    part = np.partition(values, half, axis=None)
    if values.size % 2:
        return float(part[half])
    return float((part[:half].max() + part[half]) / 2)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))


def _edge_strength(image: np.ndarray) -> np.ndarray:
    grey = _grey(image)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(cv2.magnitude(gx, gy))
