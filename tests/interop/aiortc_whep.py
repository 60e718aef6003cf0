"""WHEP player built on aiortc (Python's WebRTC stack): plays URL for SECONDS and reports.

    target/test-peers/aiortc/bin/python tests/interop/aiortc_whep.py \\
        http://127.0.0.1:8080/whep/live/cam 8 [RECORDING.mp4]

Offers receive-only video and audio (aiortc offers H.264 and VP8, Opus and G.711), lets
aiortc gather its candidates (setLocalDescription returns once gathering is complete, so the
offer is non-trickle), POSTs it, applies the answer and pulls decoded frames from each track
with track.recv(); with a third argument it records the tracks into that file instead
(aiortc's MediaRecorder: decoded, then encoded again by PyAV), so the frames can be counted
and checked by ffprobe afterwards. At the end it DELETEs the session and prints one JSON line:

    {"connected": true, "video_frames": 200, "audio_buffers": 400, "width": 640,
     "height": 360, "video_codec": "H264", "errors": [], "warnings": []}

scripts/test installs aiortc into target/test-peers/aiortc.
"""

import asyncio
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamError


def loopback_only(use_ipv4=True, use_ipv6=True):
    """Stands in for aioice.ice.get_host_addresses, which leaves out 127.0.0.1 and ::1.

    The server under test listens on 127.0.0.1 only, and offers only that candidate.
    """
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = loopback_only


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


async def play(url, seconds, report, recording=None):
    pc = RTCPeerConnection()
    recorder = MediaRecorder(recording) if recording else None
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
    if "127.0.0.1" not in offer:
        report["errors"].append("the offer has no 127.0.0.1 candidate")

    session_url = None
    try:
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
    if len(sys.argv) not in (3, 4):
        print("usage: aiortc_whep.py URL SECONDS [RECORDING.mp4]", file=sys.stderr)
        sys.exit(2)
    url, seconds = sys.argv[1], float(sys.argv[2])
    recording = sys.argv[3] if len(sys.argv) == 4 else None
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
        asyncio.run(play(url, seconds, report, recording))
    except Exception as e:  # noqa: BLE001 - every failure goes into the report
        report["errors"].append(f"{type(e).__name__}: {e}")
    report["warnings"] = warnings.messages
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
