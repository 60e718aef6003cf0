"""WHEP player built on aiortc (Python's WebRTC stack): plays URL for SECONDS and reports.

    target/test-peers/aiortc/bin/python tests/interop/aiortc_whep.py \\
        http://127.0.0.1:8080/whep/live/cam 8 [--address ::1] [--bundle-policy max-compat]
        [--rtp-log] [--join-at N --gop G] [--record RECORDING.mp4]

Offers receive-only video and audio (aiortc offers H.264 and VP8, Opus and G.711), lets
aiortc gather its candidates (setLocalDescription returns once gathering is complete, so the
offer is non-trickle), POSTs it, applies the answer and pulls decoded frames from each track
with track.recv(). At the end it DELETEs the session and prints one JSON line:

    {"connected": true, "video_frames": 200, "audio_buffers": 400, "width": 640,
     "height": 360, "video_codec": "H264", "errors": [], "warnings": []}

Options: --address, the one host address aioice gathers (127.0.0.1 by default; ::1 for IPv6);
--bundle-policy, aiortc's (balanced by default, a transport per m-line offered as one
BUNDLE group, as max-compat; with max-bundle aiortc 1.16 never connects to an answer that
lists candidates only in the BUNDLE-tagged m-line, as RFC 9143 7.1.3 has it: it keeps the
candidates of the last m-line of each transport); --rtp-log adds "video_rtp" (one [arrival, RTP
timestamp, packets] per video frame, arrival in seconds of the wall clock) and
"video_sender_reports" ([arrival, NTP time in seconds, RTP timestamp] per RTCP sender report for
video) to the report; --join-at N --gop G makes the POST wait until the stream (video only,
a GOP of G frames) is N frames into its GOP, read from frames_in in the stream API
("joined_at_frame": where it was); --record FILE records the tracks into FILE instead of
reading them (aiortc's MediaRecorder: decoded, then encoded again by PyAV), so the frames can
be counted and checked by ffprobe afterwards.

scripts/test installs aiortc into target/test-peers/aiortc.
"""

import argparse
import asyncio
import json
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket

HOST_ADDRESS = ["127.0.0.1"]


def loopback_only(use_ipv4=True, use_ipv6=True):
    """Stands in for aioice.ice.get_host_addresses, which leaves out 127.0.0.1 and ::1.

    The server under test listens on a loopback address only, and offers only that candidate.
    """
    ipv6 = ":" in HOST_ADDRESS[0]
    return HOST_ADDRESS if (use_ipv6 if ipv6 else use_ipv4) else []


aioice.ice.get_host_addresses = loopback_only

# --rtp-log: what arrives for video, as it arrives (before the jitter buffer).
VIDEO_RTP = []
VIDEO_SENDER_REPORTS = []


def log_rtp():
    handle_rtp = RTCRtpReceiver._handle_rtp_packet
    handle_rtcp = RTCRtpReceiver._handle_rtcp_packet

    def is_video(receiver):
        return getattr(receiver, "_RTCRtpReceiver__kind", None) == "video"

    async def on_rtp(self, packet, arrival_time_ms):
        if is_video(self):
            if VIDEO_RTP and VIDEO_RTP[-1][1] == packet.timestamp:
                VIDEO_RTP[-1][2] += 1
            else:
                VIDEO_RTP.append([time.time(), packet.timestamp, 1])
        return await handle_rtp(self, packet, arrival_time_ms)

    async def on_rtcp(self, packet):
        if is_video(self) and isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            ntp = (info.ntp_timestamp >> 32) - 2_208_988_800 + (info.ntp_timestamp & 0xFFFFFFFF) / 2**32
            VIDEO_SENDER_REPORTS.append([time.time(), ntp, info.rtp_timestamp])
        return await handle_rtcp(self, packet)

    RTCRtpReceiver._handle_rtp_packet = on_rtp
    RTCRtpReceiver._handle_rtcp_packet = on_rtcp


def wait_for_gop_position(url, join_at, gop, report):
    """Returns once the stream is join_at (to join_at + 2) frames into its GOP."""
    info = url.replace("/whep/", "/api/v1/streams/", 1)
    for _ in range(3000):
        try:
            with urllib.request.urlopen(info, timeout=5) as response:
                at = json.loads(response.read()).get("frames_in", -1) % gop
        except (OSError, ValueError):
            at = -1
        if join_at <= at < join_at + 3:
            report["joined_at_frame"] = at
            return
        time.sleep(0.01)


class Collect(logging.Handler):
    """Keeps the warnings aiortc and aioice log (decoder errors, ICE or DTLS trouble)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(f"{record.name}: {record.getMessage()}")


def http(method, url, body=None):
    """One blocking HTTP request; returns (status, headers, text) or raises with the body."""
    headers = {"Content-Type": "application/sdp"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {url}: {e.code} {e.read().decode(errors='replace')}") from e


def answered_video_codec(answer):
    """The codec of the first payload type on the answer's video m-line, e.g. "H264"."""
    lines = answer.splitlines()
    video = next((line for line in lines if line.startswith("m=video ")), None)
    if video is None or len(video.split()) < 4:
        return None
    rtpmap = f"a=rtpmap:{video.split()[3]} "
    codec = next((line[len(rtpmap):] for line in lines if line.startswith(rtpmap)), None)
    return codec.split("/")[0] if codec else None


async def play(url, seconds, report, options):
    pc = RTCPeerConnection(
        RTCConfiguration(bundlePolicy=RTCBundlePolicy(options.bundle_policy))
    )
    recorder = MediaRecorder(options.record) if options.record else None
    counts = {"video": 0, "audio": 0}
    readers = []

    @pc.on("connectionstatechange")
    def on_state():
        print(f"aiortc peer: connection state {pc.connectionState}", file=sys.stderr, flush=True)
        if pc.connectionState == "connected":
            report["connected"] = True
        elif pc.connectionState == "failed":
            report["errors"].append("the peer connection failed")

    async def read(track):
        # recv() returns decoded frames: av.VideoFrame for video, av.AudioFrame for audio.
        try:
            while True:
                frame = await track.recv()
                counts[track.kind] += 1
                if track.kind == "video":
                    report["width"], report["height"] = frame.width, frame.height
        except MediaStreamError:
            pass  # the track ended

    @pc.on("track")
    def on_track(track):
        print(f"aiortc peer: receiving {track.kind}", file=sys.stderr, flush=True)
        if recorder:
            recorder.addTrack(track)
        else:
            readers.append(asyncio.ensure_future(read(track)))

    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    print(f"aiortc peer: offer:\n{offer}", file=sys.stderr, flush=True)
    if f" {options.address} " not in offer:
        report["errors"].append(f"the offer has no {options.address} candidate")

    session_url = None
    try:
        if options.join_at is not None:
            await asyncio.to_thread(wait_for_gop_position, url, options.join_at, options.gop, report)
        status, headers, answer = await asyncio.to_thread(http, "POST", url, offer.encode())
        location = headers.get("Location")
        if status != 201 or not location:
            raise RuntimeError(f"POST {url}: status {status}, Location {location!r}")
        session_url = urllib.parse.urljoin(url, location)
        print(f"aiortc peer: answer:\n{answer}", file=sys.stderr, flush=True)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        report["video_codec"] = answered_video_codec(answer)
        if recorder:
            await recorder.start()
        await asyncio.sleep(seconds)
    finally:
        if recorder:
            await recorder.stop()
        if session_url:
            try:
                await asyncio.to_thread(http, "DELETE", session_url)
            except (RuntimeError, OSError) as e:
                report["errors"].append(str(e))
        await pc.close()
        for reader in readers:
            reader.cancel()
        report["video_frames"] = counts["video"]
        report["audio_buffers"] = counts["audio"]


def main():
    parser = argparse.ArgumentParser(description="WHEP player on aiortc")
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument(
        "--bundle-policy", default="balanced", choices=["max-bundle", "balanced", "max-compat"]
    )
    parser.add_argument("--rtp-log", action="store_true")
    parser.add_argument("--join-at", type=int, metavar="N")
    parser.add_argument("--gop", type=int, default=0, metavar="G")
    parser.add_argument("--record", metavar="FILE")
    options = parser.parse_args()
    HOST_ADDRESS[0] = options.address
    if options.rtp_log:
        log_rtp()
    warnings = Collect()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().addHandler(warnings)
    report = {
        "connected": False,
        "video_frames": 0,
        "audio_buffers": 0,
        "width": None,
        "height": None,
        "video_codec": None,
        "errors": [],
    }
    try:
        asyncio.run(play(options.url, options.seconds, report, options))
    except Exception as e:  # noqa: BLE001 - every failure goes into the report
        report["errors"].append(f"{type(e).__name__}: {e}")
    report["warnings"] = warnings.messages
    if options.rtp_log:
        report["video_rtp"] = VIDEO_RTP
        report["video_sender_reports"] = VIDEO_SENDER_REPORTS
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
