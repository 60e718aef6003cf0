#!/usr/bin/python3
"""An IP camera for the tests: a GStreamer RTSP server (gst-rtsp-server through PyGObject).

Run with Debian's /usr/bin/python3 (it has `gi`). Serves one live test pattern at
rtsp://127.0.0.1:PORT/cam: H.264 (x264, no sliced threads, a keyframe every second) or H.265
(x265, `rtph265pay`) plus one audio track. Prints "READY <port>" on stdout once listening.

    rtsp_server.py --port 0 --audio aac|opus|pcma|none [--auth user:pass] [--protocols tcp,udp]
                   [--video h264|h265] [--beep]

--beep: the audio is silence with a 50 ms 1 kHz beep at the start of every second, when the
video has a keyframe (exactly every 25 frames: no scene-cut keyframes), to measure A/V sync.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

AUDIO = {
    "aac": "audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=44100,channels=2 "
    "! audioconvert ! avenc_aac ! rtpmp4gpay name=pay1 pt=97",
    "opus": "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample "
    "! opusenc ! rtpopuspay name=pay1 pt=98",
    "pcma": "audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=8000,channels=1 "
    "! alawenc ! rtppcmapay name=pay1 pt=8",
    "none": "",
}


VIDEO = {
    "h264": "x264enc tune=zerolatency sliced-threads=false key-int-max=25 bitrate=800 {x264} "
    "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency key-int-max=25 bitrate=800 {x265} "
    "! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=-1",
}

# One tick per second, starting at each second: audiotestsrc starts a tick one buffer before
# the second, so buffers of 1 ms (48 samples). Not live, nor is the video with it: both
# start at timestamp 0, so every beep is at a keyframe by construction (the sinks still send
# in real time).
BEEP = (
    "audiotestsrc is-live=false wave=ticks freq=1000 sine-periods-per-tick=50 volume=0.5 "
    "samplesperbuffer=48 ! audio/x-raw,rate=48000,channels=2"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--audio", choices=sorted(AUDIO), default="aac")
    ap.add_argument("--auth", help="user:pass required (basic auth)")
    ap.add_argument("--protocols", default="tcp,udp")
    ap.add_argument("--video", choices=sorted(VIDEO), default="h264")
    ap.add_argument("--beep", action="store_true")
    args = ap.parse_args()

    Gst.init(None)
    video = (
        "videotestsrc is-live=true pattern=smpte ! video/x-raw,format=I420,width=640,height=360,framerate=25/1 "
        "! "
        + VIDEO[args.video].format(
            x264='option-string="scenecut=0"' if args.beep else "",
            x265='option-string="scenecut=0"' if args.beep else "",
        )
    )
    audio = AUDIO[args.audio]
    if args.beep:
        video = video.replace("is-live=true", "is-live=false")
    if args.beep and audio:
        # The same encoder and payloader behind the beep source.
        audio = BEEP + " ! audioconvert ! " + audio.split(" ! audioconvert ! ", 1)[1]
    launch = "( " + video + " " + audio + " )"

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    protocols = GstRtsp.RTSPLowerTrans(0)
    for p in args.protocols.split(","):
        protocols |= {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP}[p]
    factory.set_protocols(protocols)

    if args.auth:
        user, password = args.auth.split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera-user", "media.factory.access", True)
        permissions.add_permission_for_role("camera-user", "media.factory.construct", True)
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        sys.exit(1)
    print("READY %d" % server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
