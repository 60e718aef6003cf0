//! Media out: the feeds' frames fanned out to their viewers, a new viewer's GOP catch-up
//! (paced, see [`crate::outputs::whep`]), keyframe requests to a WHIP publisher, and what a
//! change of the stream's video does to the sessions that play it.

use super::{send_media, Engine, FeedKey, PeerEntry, PeerKey, PeerRole};
use crate::bus::ReaderEvent;
use crate::outputs::whep::{Packetized, VideoUpdate, CATCH_UP_INTERVAL};
use crate::webrtc::peer::VideoCodec;
use rtc::statistics::StatsSelector;
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Instant;

impl Engine {
    // ---- media out ----------------------------------------------------------------------

    pub(super) fn media(&mut self, (feed_key, event): (FeedKey, Option<ReaderEvent>)) {
        let now = Instant::now();
        let Some(entry) = self.feeds.get_mut(&feed_key) else {
            return;
        };
        match event {
            None => {
                let viewers = entry.viewers.clone();
                for key in viewers {
                    self.remove(key, "the stream ended");
                }
                self.feeds.remove(&feed_key);
            }
            Some(ReaderEvent::Tracks(tracks)) => {
                if let Some(update) = entry.feed.on_tracks(tracks) {
                    self.video_changed(feed_key, update, now);
                }
            }
            Some(ReaderEvent::Lost { frames }) => {
                tracing::debug!(stream = %entry.stream.name(), frames, "webrtc feed fell behind");
                entry.feed.on_lost();
                let viewers = entry.viewers.clone();
                let stream = entry.stream.name().to_string();
                for key in viewers {
                    if let Some(PeerEntry {
                        role: PeerRole::Viewer { viewer, .. },
                        ..
                    }) = self.peers.get_mut(&key).map(|p| &mut **p)
                    {
                        viewer.restart_video();
                    }
                }
                self.keyframe_wanted(&stream, now);
            }
            Some(ReaderEvent::Frame(frame)) => {
                let Some(packetized) = entry.feed.on_frame(&frame) else {
                    return;
                };
                let viewers = std::mem::take(&mut entry.viewers);
                self.outbox.sending_frame = Some(frame.published_at);
                for key in &viewers {
                    self.send_to_viewer(*key, &packetized, now);
                }
                if let Some(entry) = self.feeds.get_mut(&feed_key) {
                    entry.viewers = viewers;
                }
                // Out now, so the delay is what the viewers get.
                self.outbox.flush();
                self.outbox.sending_frame = None;
            }
        }
    }

    /// The stream's video changed configuration. Viewers of the same codec go on at the next
    /// keyframe (parameter sets go in band before it); a session that negotiated another codec
    /// is closed, with the reason in the log and in the closed-session list: WHEP has no way
    /// for the server to offer anew (RFC 9725 leaves renegotiation out), and sending a codec
    /// the viewer did not negotiate would only show as a broken picture.
    fn video_changed(&mut self, feed: FeedKey, update: VideoUpdate, now: Instant) {
        let Some(entry) = self.feeds.get(&feed) else {
            return;
        };
        let stream = entry.stream.name().to_string();
        let label = |c: &Option<switchyard_media::CodecConfig>| match c {
            None => "none".to_string(),
            Some(c) => VideoCodec::of(c).map_or_else(
                || c.name().to_ascii_uppercase().replace("HEVC", "H.265"),
                |v| v.label().to_string(),
            ),
        };
        let (from, to) = (label(&update.before), label(&update.after));
        let new_codec = update.after.as_ref().map(VideoCodec::of);
        let mut closing = Vec::new();
        let mut restarted = false;
        for key in entry.viewers.clone() {
            let Some(PeerEntry {
                role:
                    PeerRole::Viewer {
                        viewer,
                        video_codec: Some(negotiated),
                        ..
                    },
                ..
            }) = self.peers.get_mut(&key).map(|p| &mut **p)
            else {
                continue;
            };
            if !viewer.wants_video() {
                continue;
            }
            match new_codec {
                Some(codec) if codec != Some(*negotiated) => {
                    closing.push((key, negotiated.label()))
                }
                _ => {
                    viewer.restart_video();
                    restarted = true;
                }
            }
        }
        if update.before.is_some() || !closing.is_empty() {
            tracing::info!(stream = %stream, from = %from, to = %to, viewers_closed = closing.len(), "the stream's video changed");
        }
        for (key, negotiated) in closing {
            let reason = format!("the stream's video changed from {from} to {to}, and this session negotiated {negotiated}: start a new session (WebRTC sends only the codec a session negotiated)");
            self.remove(key, &reason);
        }
        if restarted {
            self.keyframe_wanted(&stream, now);
        }
    }

    /// Writes a live frame to one viewer.
    fn send_to_viewer(&mut self, key: PeerKey, frame: &Arc<Packetized>, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.connected {
            return;
        }
        let PeerRole::Viewer { viewer, .. } = &mut peer.role else {
            return;
        };
        self.packets.clear();
        viewer.live(frame, now, &mut self.packets);
        if self.packets.is_empty() {
            return;
        }
        send_media(peer, &mut self.packets, &mut self.outbox, false);
    }

    pub(super) fn viewer_connected(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let PeerRole::Viewer { viewer, feed, .. } = &mut peer.role else {
            return;
        };
        viewer.connected_at = Some(now);
        // DTLS is done: the SRTP keys were derived, and the stats name the profile.
        let cipher = peer
            .pc
            .get_stats(now, StatsSelector::None)
            .transport()
            .map(|t| t.srtp_cipher.clone())
            .unwrap_or_default();
        let srtp = match &peer.keys {
            Some(keys) => keys.sender(&cipher),
            None => Err("no SRTP key capture on this connection".to_string()),
        };
        match srtp {
            Ok(srtp) => peer.srtp = Some(srtp),
            Err(e) => {
                tracing::error!(session = %peer.session, error = %e, "cannot protect media for this viewer");
                self.remove(key, "no SRTP keys");
                return;
            }
        }
        let stream = peer.stream.clone();
        let Some(entry) = self.feeds.get(feed) else {
            return;
        };
        self.packets.clear();
        let gop = entry.feed.gop();
        viewer.catch_up(gop, now, &mut self.packets);
        if let (Some(first), Some(last)) = (gop.first(), gop.last()) {
            tracing::debug!(session = %peer.session, frames = gop.len(), span_ms = ((last.pts_secs - first.pts_secs) * 1000.0).round(), "GOP catch-up");
        }
        if viewer.catching_up() {
            self.pacing.push(Reverse((now + CATCH_UP_INTERVAL, key)));
        }
        send_media(peer, &mut self.packets, &mut self.outbox, false);
        self.service(key, now);
        self.keyframe_wanted(&stream, now);
    }

    /// The next slice of a viewer's GOP catch-up.
    pub(super) fn pace(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let PeerRole::Viewer { viewer, .. } = &mut peer.role else {
            return;
        };
        self.packets.clear();
        if viewer.pace(now, &mut self.packets) {
            self.pacing.push(Reverse((now + CATCH_UP_INTERVAL, key)));
        } else if let Some(connected) = viewer.connected_at {
            tracing::debug!(session = %peer.session, ms = (now - connected).as_millis() as u64, "GOP catch-up sent");
        }
        send_media(peer, &mut self.packets, &mut self.outbox, false);
    }

    /// A viewer of `stream` needs a keyframe: ask its publisher when it is a WHIP peer here.
    pub(super) fn keyframe_wanted(&mut self, stream: &str, now: Instant) {
        let Some(key) = self.publishers.get(stream).copied() else {
            return;
        };
        if let Some(PeerEntry {
            role: PeerRole::Publisher { ingest, .. },
            ..
        }) = self.peers.get_mut(&key).map(|p| &mut **p)
        {
            ingest.request_keyframe();
        }
        self.service(key, now);
    }
}
