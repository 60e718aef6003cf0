#!/usr/bin/python3
"""WHEP player built on GStreamer's webrtcbin: plays URL for SECONDS and reports.

    /usr/bin/python3 tests/interop/gst_whep.py http://127.0.0.1:8080/whep/live/cam 8

Offers receive-only H.264 (packetization-mode=1) and Opus, waits for ICE gathering to
complete (non-trickle), POSTs the offer, applies the answer and decodes what arrives:
video through rtph264depay ! h264parse ! avdec_h264, audio through rtpopusdepay ! opusdec,
each into a fakesink whose buffers are counted. At the end it DELETEs the session and prints
one JSON line:

    {"connected": true, "video_frames": 200, "audio_buffers": 400, "width": 640,
     "height": 360, "errors": [], "warnings": []}

--bundle-policy none|balanced|max-compat|max-bundle (webrtcbin's; max-bundle by default):
with none, each m-line gets a transport of its own and the offer has no a=group:BUNDLE.

--video-codec h265: offers H.265 (RFC 7798) instead of H.264 and decodes it through
rtph265depay ! h265parse ! avdec_h265.
"""

import argparse

import sys

from gst_common import Gst, GstWebRTC, Peer, count_buffers, guarded

VIDEO_CAPS = (
    "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
    "packetization-mode=(string)1,profile-level-id=(string)42e01f,"
    "level-asymmetry-allowed=(string)1"
)
AUDIO_CAPS = (
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,"
    "encoding-params=(string)2"
)

VIDEO_CAPS_H265 = "application/x-rtp,media=video,encoding-name=H265,payload=49,clock-rate=90000"

# Decoding chains, by transceiver kind. wait-for-keyframe: nothing reaches the decoder
# before the first keyframe, so joining mid-GOP is no decode error.
DECODERS = {
    GstWebRTC.WebRTCKind.VIDEO: (
        "video",
        "queue ! rtph264depay wait-for-keyframe=true request-keyframe=true ! h264parse"
        " ! avdec_h264 ! fakesink name=sink sync=false",
    ),
    GstWebRTC.WebRTCKind.AUDIO: (
        "audio",
        "queue ! rtpopusdepay ! opusdec ! fakesink name=sink sync=false",
    ),
}


H265_DECODER = (
    "video",
    "queue ! rtph265depay ! h265parse"
    " ! avdec_h265 ! fakesink name=sink sync=false",
)


class WhepPlayer(Peer):
    def __init__(self, url, seconds, bundle_policy="max-bundle", video_codec="h264"):
        super().__init__(url, seconds)
        self.decoders = dict(DECODERS)
        video_caps = VIDEO_CAPS
        if video_codec == "h265":
            self.decoders[GstWebRTC.WebRTCKind.VIDEO] = H265_DECODER
            video_caps = VIDEO_CAPS_H265
        self.counts = {"video": 0, "audio": 0}
        self.video_size = (None, None)
        self.pipeline = Gst.Pipeline.new("whep")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        policy = getattr(GstWebRTC.WebRTCBundlePolicy, bundle_policy.upper().replace("-", "_"))
        self.webrtc.set_property("bundle-policy", policy)
        self.pipeline.add(self.webrtc)
        self.webrtc.connect("pad-added", self._on_pad_added)
        # Receive-only transceivers: with nothing linked to webrtcbin's sink pads, adding
        # them is what makes webrtcbin ask for negotiation.
        for caps in (video_caps, AUDIO_CAPS):
            self.webrtc.emit(
                "add-transceiver",
                GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                Gst.Caps.from_string(caps),
            )

    @guarded
    def _on_pad_added(self, _webrtc, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        kind = pad.get_property("transceiver").get_property("kind")
        if kind not in self.decoders:
            self.error(f"a source pad of unknown kind {kind}")
            return
        name, description = self.decoders[kind]
        print(f"gst peer: receiving {name}", file=sys.stderr, flush=True)
        chain = Gst.parse_bin_from_description(description, True)
        self.pipeline.add(chain)
        chain.sync_state_with_parent()
        if pad.link(chain.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
            self.error(f"cannot link the {name} pad to its decoder")
            return
        sink_pad = chain.get_by_name("sink").get_static_pad("sink")
        count_buffers(sink_pad, self.counts, name)
        if name == "video":
            sink_pad.connect("notify::caps", self._on_video_caps)

    def _on_video_caps(self, pad, _pspec):
        caps = pad.get_current_caps()
        if caps:
            s = caps.get_structure(0)
            self.video_size = (s.get_value("width"), s.get_value("height"))


def main():
    parser = argparse.ArgumentParser(description="WHEP player on GStreamer's webrtcbin")
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument(
        "--bundle-policy",
        default="max-bundle",
        choices=["none", "balanced", "max-compat", "max-bundle"],
    )
    parser.add_argument("--video-codec", default="h264", choices=["h264", "h265"])
    options = parser.parse_args()
    Gst.init(None)
    player = WhepPlayer(options.url, options.seconds, options.bundle_policy, options.video_codec)
    player.start()
    width, height = player.video_size
    player.report(
        video_frames=player.counts["video"],
        audio_buffers=player.counts["audio"],
        width=width,
        height=height,
    )


if __name__ == "__main__":
    main()
