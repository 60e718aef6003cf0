"""Shared pieces of the GStreamer webrtcbin WHIP/WHEP peers (gst_whep.py, gst_whip.py).

Run with Debian's /usr/bin/python3 (python3-gi). Needs GStreamer 1.22's webrtcbin
(gstreamer1.0-plugins-bad), libnice's GStreamer plugin (gstreamer1.0-nice) and the
GObject-introspection data for GstWebRTC, GstSdp and Nice (gir1.2-gst-plugins-bad-1.0,
gir1.2-gst-plugins-base-1.0, gir1.2-nice-0.1). scripts/test installs them.
"""

import ctypes
import functools
import json
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

# How long ICE gathering may take before the offer is sent anyway (it takes milliseconds
# with one loopback address).
GATHER_TIMEOUT_S = 10


def _take_ref(obj):
    """Adds one reference to a GObject from C, behind PyGObject's back."""
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    gobject = ctypes.CDLL("libgobject-2.0.so.0")
    gobject.g_object_ref.argtypes = [ctypes.c_void_p]
    gobject.g_object_ref.restype = ctypes.c_void_p
    gobject.g_object_ref(get_pointer(obj.__gpointer__, None))


def use_loopback(webrtc):
    """Makes webrtcbin's ICE agent gather a host candidate on 127.0.0.1.

    libnice leaves loopback addresses out when it picks the local addresses itself, and the
    server under test offers only 127.0.0.1. Once an address is added explicitly with
    nice_agent_add_local_address(), libnice gathers on the added addresses only. webrtcbin
    exposes its GstWebRTCNice as the "ice-agent" property and that object exposes the
    NiceAgent as "agent". Must run before the offer is set as local description.
    """
    ice = webrtc.get_property("ice-agent")
    # GStreamer 1.22's webrtcbin never sinks the floating reference of the ICE object it
    # creates: PyGObject sinks it when the property is read, so Python would own webrtcbin's
    # only reference and the object would be freed twice. Give webrtcbin a reference of its
    # own when that is the case (a fixed GStreamer holds two here: its own and Python's).
    if ice.ref_count == 1:
        _take_ref(ice)
    address = Nice.Address.new()
    address.set_from_string("127.0.0.1")
    ice.get_property("agent").add_local_address(address)


def guarded(handler):
    """Wraps a callback that GLib or GStreamer calls: an exception in it becomes a reported
    error and ends the run, instead of a traceback that leaves the peer waiting."""

    @functools.wraps(handler)
    def run(self, *args):
        try:
            return handler(self, *args)
        except Exception as e:  # noqa: BLE001 - everything is reported
            traceback.print_exc()
            self.error(f"{handler.__name__}: {e!r}")
            self.loop.quit()
            return False

    return run


class Peer:
    """A webrtcbin in a pipeline, negotiated with a WHIP/WHEP endpoint (non-trickle).

    Subclasses build the pipeline (`self.pipeline`, containing a webrtcbin `self.webrtc`)
    before calling `start()`; the report is one JSON line on stdout.
    """

    def __init__(self, url, seconds):
        self.url = url
        self.seconds = seconds
        self.session_url = None
        self.connected = False
        self.connected_at = None  # time.monotonic() when the connection came up
        self.errors = []
        self.warnings = []
        self.loop = GLib.MainLoop()
        self.offer_sent = False

    # --- errors and the bus ---

    def error(self, text):
        print(f"gst peer: {text}", file=sys.stderr, flush=True)
        self.errors.append(text)

    @guarded
    def _on_bus_message(self, _bus, message):
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            self.error(f"{message.src.get_name()}: {err.message} ({debug})")
            self.loop.quit()
        elif message.type == Gst.MessageType.WARNING:
            warning, debug = message.parse_warning()
            text = f"{message.src.get_name()}: {warning.message}"
            print(f"gst peer: warning {text} ({debug})", file=sys.stderr, flush=True)
            self.warnings.append(text)
        return True

    # --- negotiation ---

    def start(self):
        use_loopback(self.webrtc)
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering_state)
        self.webrtc.connect("notify::connection-state", self._on_connection_state)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_bus_message)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.error("the pipeline does not start")
            return
        GLib.timeout_add_seconds(GATHER_TIMEOUT_S, self._on_gather_timeout)
        self.loop.run()

    @guarded
    def _on_negotiation_needed(self, webrtc):
        # Before the offer is made: subclasses set transceiver directions and codecs here.
        self.prepare_transceivers()
        promise = Gst.Promise.new_with_change_func(self._on_offer_created)
        webrtc.emit("create-offer", None, promise)

    def prepare_transceivers(self):
        pass

    @guarded
    def _on_offer_created(self, promise):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            GLib.idle_add(self._fail, "webrtcbin created no offer")
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    @guarded
    def _on_gathering_state(self, webrtc, _pspec):
        state = webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            # Non-trickle WHIP/WHEP: the offer goes out with every candidate in it.
            GLib.idle_add(self._send_offer)

    @guarded
    def _on_gather_timeout(self):
        if not self.offer_sent:
            self.error(f"ICE gathering not complete after {GATHER_TIMEOUT_S} s; sending anyway")
            self._send_offer()
        return False

    @guarded
    def _send_offer(self):
        if self.offer_sent:
            return False
        self.offer_sent = True
        description = self.webrtc.get_property("local-description")
        if description is None:
            return self._fail("webrtcbin has no local description to send")
        offer = description.sdp.as_text()
        print(f"gst peer: offer:\n{offer}", file=sys.stderr, flush=True)
        if "127.0.0.1" not in offer:
            self.error("the offer has no 127.0.0.1 candidate")
        request = urllib.request.Request(
            self.url,
            data=offer.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
                location = response.headers.get("Location")
                answer = response.read().decode()
        except urllib.error.HTTPError as e:
            return self._fail(f"POST {self.url}: {e.code} {e.read().decode(errors='replace')}")
        except OSError as e:
            return self._fail(f"POST {self.url}: {e}")
        if status != 201 or not location:
            return self._fail(f"POST {self.url}: status {status}, Location {location!r}")
        self.session_url = urllib.parse.urljoin(self.url, location)
        print(f"gst peer: answer:\n{answer}", file=sys.stderr, flush=True)

        result, sdp = GstSdp.SDPMessage.new_from_text(answer)
        if result != GstSdp.SDPResult.OK:
            return self._fail(f"the answer is not SDP: {answer!r}")
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        # Media flows from here on: run for the time asked, then say goodbye.
        GLib.timeout_add(int(self.seconds * 1000), self._finish)
        return False

    @guarded
    def _on_connection_state(self, webrtc, _pspec):
        state = webrtc.get_property("connection-state")
        print(f"gst peer: connection state {state.value_nick}", file=sys.stderr, flush=True)
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            self.connected = True
            self.connected_at = time.monotonic()
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(self._fail, "the peer connection failed")

    # --- the end ---

    def _fail(self, text):
        self.error(text)
        self.loop.quit()
        return False

    def _finish(self):
        self.loop.quit()
        return False

    def delete_session(self):
        """Ends the session on the server (DELETE on the Location URL)."""
        if not self.session_url:
            return
        request = urllib.request.Request(self.session_url, method="DELETE")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status not in (200, 204):
                    self.error(f"DELETE {self.session_url}: status {response.status}")
        except (urllib.error.HTTPError, OSError) as e:
            self.error(f"DELETE {self.session_url}: {e}")

    def report(self, **counts):
        self.delete_session()
        self.pipeline.set_state(Gst.State.NULL)
        report = {"connected": self.connected, **counts}
        report.update(errors=self.errors, warnings=self.warnings)
        print(json.dumps(report), flush=True)


def count_buffers(pad, counter, key):
    """Counts the buffers passing `pad` into `counter[key]`."""

    def probe(_pad, _info):
        counter[key] += 1
        return Gst.PadProbeReturn.OK

    pad.add_probe(Gst.PadProbeType.BUFFER, probe)


def parse_args(script):
    if len(sys.argv) != 3:
        print(f"usage: {script} URL SECONDS", file=sys.stderr)
        sys.exit(2)
    return sys.argv[1], float(sys.argv[2])


# The elements the two peers use, and the Debian package that brings each.
ELEMENTS = {
    "webrtcbin": "gstreamer1.0-plugins-bad",
    "dtlssrtpenc": "gstreamer1.0-plugins-bad",
    "nicesrc": "gstreamer1.0-nice",
    "nicesink": "gstreamer1.0-nice",
    "rtph264depay": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad",
    "avdec_h264": "gstreamer1.0-libav",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtpopusdepay": "gstreamer1.0-plugins-good",
    "rtpopuspay": "gstreamer1.0-plugins-good",
    "opusdec": "gstreamer1.0-plugins-base",
    "opusenc": "gstreamer1.0-plugins-base",
    "videotestsrc": "gstreamer1.0-plugins-base",
    "audiotestsrc": "gstreamer1.0-plugins-base",
}


if __name__ == "__main__":
    # `python3 gst_common.py` checks that the peers can run here: the imports above found
    # their typelibs, and every element exists. Exits non-zero with what is missing.
    Gst.init(None)
    missing = [f"{e} ({p})" for e, p in ELEMENTS.items() if Gst.ElementFactory.find(e) is None]
    if missing:
        print(f"missing GStreamer elements: {', '.join(missing)}", file=sys.stderr)
        sys.exit(1)
    print(f"{Gst.version_string()}: the webrtcbin peers can run")
