"""The evidence set's parts on their own: highlight and context on a real frame, the bounded frame
history, and the outbox that carries the pieces after the alerts without ever costing one."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from evidence_checks import (
    CONTEXT_COLOUR,
    SUBJECT_COLOUR,
    decode_jpeg,
    drawn_width,
    edge_run,
    zone_edge_colour_share,
)
from factories import make_alert

from streetwatch.edge.alerts import MEDIA_CHUNK_BYTES, MediaChunk, MediaRef
from streetwatch.edge.config import EvidenceSetConfig
from streetwatch.edge.evidence import render_evidence
from streetwatch.edge.evidence_set import FrameHistory
from streetwatch.edge.outbox import MEDIA_KEY, Outbox
from streetwatch.edge.substream import ScenePicture
from streetwatch.edge.types import EvidenceObject, Frame
from streetwatch.footage import load_image

SUBJECT = (309.0, 234.0, 464.0, 306.0)  # the white sedan at the near kerb of the traffic cam
CONTEXT = (160.0, 212.0, 300.0, 295.0)  # the yellow SUV beside it
ZONE = [(150.0, 200.0), (480.0, 200.0), (480.0, 330.0), (150.0, 330.0)]


@pytest.fixture(scope="module")
def traffic_frame(assets_dir: Path) -> Frame:
    import av

    with av.open(str(assets_dir / "video" / "cvtrafficcam_street_parking.mp4")) as container:
        image = next(container.decode(video=0)).to_ndarray(format="bgr24")
    return Frame("cam", image, 0.0, datetime(2026, 1, 1, tzinfo=UTC), 0)


def test_the_subject_is_thick_amber_and_labelled_the_context_thin_grey_the_zone_cyan(traffic_frame: Frame) -> None:
    objects = [EvidenceObject("car", 0.8, SUBJECT, "subject"), EvidenceObject("car", 0.9, CONTEXT, "context")]
    out = render_evidence(traffic_frame.picture, objects, max_width=1280, zone_px=ZONE, caption="illegal parking",
                          clean=True)
    drawn = decode_jpeg(base64.b64decode(out.evidence.jpeg_b64))
    share, width = edge_run(drawn, SUBJECT, SUBJECT_COLOUR)
    assert share > 0.9 and width >= 3
    assert edge_run(drawn, CONTEXT, SUBJECT_COLOUR)[0] < 0.1, "the context is not highlighted"
    assert edge_run(drawn, CONTEXT, CONTEXT_COLOUR)[0] > 0.6
    assert zone_edge_colour_share(drawn, ZONE) > 0.8
    assert out.emphasis == ("context", "subject")  # highest score first, as the alert's objects
    clean = decode_jpeg(out.clean_jpeg or b"")
    assert clean.shape == drawn.shape and edge_run(clean, SUBJECT, SUBJECT_COLOUR)[0] < 0.1
    # what the drawing changed across each box's edge: a thick line for the subject, a thin one beside it
    subject_width, context_width = drawn_width(drawn, clean, SUBJECT), drawn_width(drawn, clean, CONTEXT)
    assert subject_width >= 3 and 1 <= context_width <= 2, (subject_width, context_width)


def test_the_frame_history_stays_within_its_time_and_byte_bounds(traffic_frame: Frame) -> None:
    for cap in (1024 * 1024, 4 * 1024 * 1024):  # one 640 px raw clip frame is 0.7 MB
        settings = EvidenceSetConfig(clip_s=4, clip_max_frames=3, first_seen_every_s=10, first_seen_keep_s=60,
                                     history_max_bytes=cap)
        history = FrameHistory(settings, evidence_width=640, jpeg_quality=80)
        for t in range(0, 300):
            history.add(Frame("cam", traffic_frame.picture, float(t), traffic_frame.captured_at, t))
            assert history.size_bytes <= cap
    assert len(history.recent) == 3 and history.recent[-1].pts_s == 299
    assert [k.pts_s for k in history.clip(299.0)] == [297.0, 298.0, 299.0]
    first = history.first_seen(0.0)
    assert first is not None and 299 - first.pts_s <= 60 + 10  # the oldest kept, not the frame at t=0


def test_a_sub_stream_frame_is_kept_at_its_own_width_not_upscaled(traffic_frame: Frame) -> None:
    """A 640x360 sub-stream reported at pixel_size 1920x1080: its `first seen` JPEG is kept at 640 px
    (the detail it has), not upscaled to the 1280 px evidence width."""
    sub = ScenePicture(traffic_frame.picture, (1920, 1080))
    history = FrameHistory(EvidenceSetConfig(), evidence_width=1280, jpeg_quality=80)
    history.add(Frame("cam", sub, 0.0, traffic_frame.captured_at, 0))
    kept = history.first_seen(0.0)
    assert kept is not None and kept.jpeg is not None
    assert decode_jpeg(kept.jpeg).shape[:2] == (traffic_frame.height, traffic_frame.width) == (360, 640)


def test_media_wait_after_alerts_and_a_full_media_budget_drops_the_set_not_the_alert(tmp_path: Path) -> None:
    data = b"\xff\xd8" + bytes(range(256)) * 1500  # ~1.5 pieces: ~0.5 MB as base64 messages; the budget holds 0.75
    ref = MediaRef(kind="crop", sha256="a" * 64, content_type="image/jpeg", size=len(data), width=10, height=10)
    with Outbox(tmp_path / "o.sqlite", media_max_bytes=3 * MEDIA_CHUNK_BYTES) as outbox:
        first, second = make_alert(), make_alert()
        outbox.put(first)
        assert outbox.put_media(first, [(ref, data)])
        assert outbox.put_media(first, [(ref, data)]) and outbox.media_depth() == 2  # the same pieces once
        outbox.put(second)
        assert not outbox.put_media(second, [(ref.model_copy(update={"sha256": "b" * 64}), data)])  # over budget
        assert [p.alert_id for p in outbox.pending(10)] == [first.alert_id, second.alert_id]  # alerts only
        pending = outbox.sendable(10)
        assert [p.alert_id for p in pending[:2]] == [first.alert_id, second.alert_id]  # alerts first
        pieces = [MediaChunk.model_validate_json(p.payload) for p in pending[2:]]
        assert [(c.alert_id, c.chunk, c.chunks) for c in pieces] == [(first.alert_id, 0, 2), (first.alert_id, 1, 2)]
        assert pending[2].topic == f"streetwatch/v1/media/{first.edge_id}/{first.camera_id}"
        assert outbox.ack(pending[2].alert_id) and pending[2].alert_id.startswith(MEDIA_KEY)
        assert outbox.media_depth() == 1 and outbox.depth() == 2


def test_load_image_is_the_real_photo(street_dir: Path) -> None:
    assert load_image(street_dir / "kerb_parked_cars_street.jpg").shape[2] == 3
