"""The live relay (one hub subscription per channel, a bounded queue per viewer) and the
ICE host-address choice, without any WebRTC."""

from __future__ import annotations

import asyncio

import aioice.ice

from vms.live import ice
from vms.live.relay import RelayPool
from vms.live.track import DEFAULT_STEP, PassthroughVideoTrack
from vms.media.frames import AccessUnit, Codec, Gap, Subscription

from .live_media import CAMERA, CHANNEL_ID, FakeHub


def unit(i: int, keyframe: bool) -> AccessUnit:
    return AccessUnit(CHANNEL_ID, i * 3600, keyframe, b"\x00\x00\x00\x01\x65" + bytes([i % 256]))


async def drain(pool: RelayPool) -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_slow_viewer_skips_to_keyframe_without_holding_back_the_other() -> None:
    hub = FakeHub()
    pool = RelayPool(lambda: hub, viewer_maxlen=8)
    fast = pool.attach(CAMERA, "fast")
    slow = pool.attach(CAMERA, "slow")
    assert hub.subscribe_calls == 1
    got: list[AccessUnit] = []
    hub.publish(CAMERA, unit(0, False))  # before any keyframe: nobody gets it
    for i in range(1, 33):
        hub.publish(CAMERA, unit(i, keyframe=i % 10 == 1))
        await drain(pool)
        while fast.pending():
            item = await fast.get()
            assert isinstance(item, AccessUnit)
            got.append(item)
    assert [u.pts // 3600 for u in got] == list(range(1, 33))
    items = [await slow.get() for _ in range(slow.pending())]
    assert any(isinstance(x, Gap) and x.reason == "slow-consumer" for x in items)
    first_unit = next(x for x in items if isinstance(x, AccessUnit))
    assert first_unit.keyframe and slow.dropped > 0
    fast.close()
    slow.close()
    await pool.release_idle()
    assert hub.consumers(CAMERA) == 0 and pool.stats() == []


async def test_hub_ending_a_stream_ends_its_viewers() -> None:
    hub = FakeHub()
    pool = RelayPool(lambda: hub)
    viewer = pool.attach(CAMERA, "v")
    hub.subs[CAMERA][0].close()  # the hub stops the channel
    await drain(pool)
    assert viewer.closed
    items = [await viewer.get() for _ in range(viewer.pending())]
    assert items and isinstance(items[-1], Gap) and items[-1].reason == "stream-lost"
    await pool.close()


async def test_no_hub_is_a_lookup_error() -> None:
    pool = RelayPool(lambda: None)
    try:
        pool.attach(CAMERA, "v")
    except LookupError as exc:
        assert "media hub" in str(exc)
    else:
        raise AssertionError("attach without a hub must fail")


def test_host_addresses_are_scoped_to_the_block() -> None:
    with ice.host_addresses(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    outside = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert "127.0.0.1" not in outside  # aioice's own choice (never loopback) is back
    with ice.host_addresses([]):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == outside


async def test_track_yields_the_units_bytes_with_monotonic_timestamps() -> None:
    sub = Subscription(CHANNEL_ID, "viewer")
    track = PassthroughVideoTrack(sub)
    sent = [
        AccessUnit(CHANNEL_ID, 900_000, True, b"\x00\x00\x00\x01\x67key"),
        AccessUnit(CHANNEL_ID, 903_600, False, b"\x00\x00\x00\x01\x41p1"),
        AccessUnit(CHANNEL_ID, 1000, True, b"\x00\x00\x00\x01\x67restart", Codec.h264),
        AccessUnit(CHANNEL_ID, 4600, False, b"\x00\x00\x00\x01\x41p2"),
    ]
    sub.offer(sent[0])
    sub.offer(sent[1])
    sub.offer(Gap(CHANNEL_ID, "restarted"))
    for u in sent[2:]:
        sub.offer(u)
    packets = [await track.recv() for _ in sent]
    assert [bytes(p) for p in packets] == [u.data for u in sent]
    assert [p.pts for p in packets] == [0, 3600, 3600 + DEFAULT_STEP, 7200 + DEFAULT_STEP]
    assert track.gaps == 1 and track.units == 4
    track.stop()
    assert sub.closed


async def test_a_new_viewer_starts_from_the_cached_gop_at_once() -> None:
    hub = FakeHub()
    pool = RelayPool(lambda: hub, viewer_maxlen=64)
    first = pool.attach(CAMERA, "first")
    for i in range(1, 16):  # keyframes at 1 and 11: the GOP now is 11..15
        hub.publish(CAMERA, unit(i, keyframe=i % 10 == 1))
    await drain(pool)
    late = pool.attach(CAMERA, "late")
    got = [await late.get() for _ in range(late.pending())]
    assert [u.data[-1] for u in got] == list(range(11, 16))  # no wait for the next keyframe
    assert got[0].keyframe and not any(u.keyframe for u in got[1:])
    # pressed together, ending at the newest unit's time: the next live unit keeps its pace
    assert [u.pts for u in got] == [15 * 3600 - 4 + k for k in range(5)]
    hub.publish(CAMERA, unit(16, False))
    await drain(pool)
    nxt = await late.get()
    assert nxt.pts - got[-1].pts == 3600
    # a gap empties the cache: the next viewer waits for a keyframe again
    hub.publish(CAMERA, Gap(CHANNEL_ID, "packet-loss"))
    await drain(pool)
    fresh = pool.attach(CAMERA, "fresh")
    assert fresh.pending() == 0
    assert pool.stats()[0]["gop_starts"] == 1
    for sub in (first, late, fresh):
        sub.close()
    await pool.release_idle()
