#!/usr/bin/python3
"""WHIP publisher built on GStreamer's webrtcbin: publishes test media to URL for SECONDS.

    /usr/bin/python3 tests/interop/gst_whip.py http://127.0.0.1:8080/whip/live/gst 20
    /usr/bin/python3 tests/interop/gst_whip.py URL SECONDS --hold-audio 1.5
    /usr/bin/python3 tests/interop/gst_whip.py URL SECONDS --codec vp9

Sends videotestsrc as H.264 (x264enc, constrained baseline, a keyframe every 30 frames,
packetization-mode=1) and a 440 Hz audiotestsrc as Opus, on send-only transceivers. Waits
for ICE gathering to complete (non-trickle), POSTs the offer, applies the answer, streams,
then DELETEs the session and prints one JSON line with what it encoded:

    {"connected": true, "video_frames": 600, "audio_buffers": 1000, "audio_held": 0,
     "errors": [], "warnings": []}

--hold-audio S drops the Opus packets of the first S seconds after the connection is up
(counted as audio_held): a publisher whose first audio packet reaches the server well after
its first video keyframe, like a camera whose microphone starts late. Without it, which of
the two arrives first is left to chance.

--codec vp8|vp9 sends the video as VP8 (vp8enc, rtpvp8pay) or VP9 profile 0 (vp9enc,
rtpvp9pay, non-flexible mode) instead, both real-time, with a 15-bit PictureID.
"""

import argparse
import time

from gst_common import Gst, GstWebRTC, Peer, count_buffers

# sliced-threads=false: tune=zerolatency would otherwise cut every frame into slices.
PIPELINE = """
webrtcbin name=webrtc bundle-policy=max-bundle
videotestsrc is-live=true pattern=smpte
  ! video/x-raw,width=640,height=360,framerate=30/1
  ! videoconvert ! queue
  ! x264enc name=venc tune=zerolatency speed-preset=ultrafast sliced-threads=false
      key-int-max=30 bitrate=1000
  ! video/x-h264,profile=constrained-baseline
  ! rtph264pay config-interval=-1 aggregate-mode=zero-latency
  ! application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000
  ! webrtc.
audiotestsrc is-live=true wave=sine freq=440
  ! audioconvert ! audioresample ! queue
  ! opusenc name=aenc
  ! rtpopuspay name=apay
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000
  ! webrtc.
"""


# The video branch for --codec vp8 / vp9 (replaces the x264enc ... rtph264pay one).
VPX_VIDEO = """
  ! video/x-raw,format=I420 ! {enc} name=venc deadline=1 cpu-used=8 keyframe-max-dist=30 target-bitrate=1000000
  ! rtp{codec}pay picture-id-mode=15-bit
  ! application/x-rtp,media=video,encoding-name={name},payload={pt},clock-rate=90000
  ! webrtc.
"""


def pipeline(codec):
    if codec == "h264":
        return PIPELINE
    head, tail = PIPELINE.split("  ! x264enc", 1)
    tail = tail.split("! webrtc.", 1)[1]
    enc = {"vp8": "vp8enc", "vp9": "vp9enc"}[codec]
    pt = {"vp8": 96, "vp9": 98}[codec]
    return head + VPX_VIDEO.format(enc=enc, codec=codec, name=codec.upper(), pt=pt).lstrip("\n") + tail


class WhipPublisher(Peer):
    def __init__(self, url, seconds, hold_audio, codec="h264"):
        super().__init__(url, seconds)
        self.counts = {"video": 0, "audio": 0, "audio_held": 0}
        self.hold_audio = hold_audio
        self.pipeline = Gst.parse_launch(pipeline(codec))
        self.webrtc = self.pipeline.get_by_name("webrtc")
        count_buffers(self.pipeline.get_by_name("venc").get_static_pad("src"), self.counts, "video")
        count_buffers(self.pipeline.get_by_name("aenc").get_static_pad("src"), self.counts, "audio")
        if hold_audio > 0:
            payloader = self.pipeline.get_by_name("apay")
            payloader.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._hold_audio)

    def _hold_audio(self, _pad, _info):
        since = self.connected_at
        if since is None:
            return Gst.PadProbeReturn.DROP  # webrtcbin would drop it too: not connected yet
        if time.monotonic() - since < self.hold_audio:
            self.counts["audio_held"] += 1
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    def prepare_transceivers(self):
        # Linking the payloaders made send-receive transceivers; WHIP only sends.
        index = 0
        while (transceiver := self.webrtc.emit("get-transceiver", index)) is not None:
            index += 1
            transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)


def main():
    parser = argparse.ArgumentParser(description="WHIP publisher on GStreamer's webrtcbin")
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--hold-audio", type=float, default=0, metavar="S")
    parser.add_argument("--codec", choices=["h264", "vp8", "vp9"], default="h264")
    args = parser.parse_args()
    Gst.init(None)
    publisher = WhipPublisher(args.url, args.seconds, args.hold_audio, args.codec)
    publisher.start()
    counts = publisher.counts
    publisher.report(
        video_frames=counts["video"],
        audio_buffers=counts["audio"],
        audio_held=counts["audio_held"],
    )


if __name__ == "__main__":
    main()
