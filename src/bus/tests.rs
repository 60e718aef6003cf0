use super::*;
use bytes::Bytes;
use std::sync::Arc;
use switchyard_media::{aac::AudioSpecificConfig, CodecConfig, Frame, Track, TrackId};

const VIDEO: TrackId = TrackId(1);
const AUDIO: TrackId = TrackId(2);

fn tracks() -> Vec<Track> {
    // A real SPS/PPS pair (libx264 High 640x360), so the config is the real thing.
    let sps = Bytes::from_static(&[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
    ]);
    let pps = Bytes::from_static(&[0x68, 0xef, 0xbc, 0xb0]);
    let avc = switchyard_media::h264::AvcConfig::from_parameter_sets(vec![sps], vec![pps]).unwrap();
    let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
    vec![
        Track {
            id: VIDEO,
            codec: CodecConfig::H264(avc),
            clock_rate: 90000,
        },
        Track {
            id: AUDIO,
            codec: CodecConfig::Aac(asc),
            clock_rate: 44100,
        },
    ]
}

/// Video frame `n`; a keyframe every `gop` frames. The payload encodes `n`.
fn video(n: i64, gop: i64) -> Frame {
    Frame {
        track: VIDEO,
        pts: n * 3600,
        dts: n * 3600,
        keyframe: n % gop == 0,
        data: Bytes::from(n.to_be_bytes().to_vec()),
    }
}

fn audio(n: i64) -> Frame {
    Frame {
        track: AUDIO,
        pts: n * 1024,
        dts: n * 1024,
        keyframe: true,
        data: Bytes::from(n.to_be_bytes().to_vec()),
    }
}

fn seq(frame: &BusFrame) -> i64 {
    i64::from_be_bytes(frame.frame.data[..8].try_into().unwrap())
}

fn peer() -> Peer {
    Peer::new("test", None)
}

/// Everything pending for `reader` right now.
fn drain(reader: &mut Reader) -> Vec<ReaderEvent> {
    let mut out = Vec::new();
    while let TryRecv::Event(e) = reader.try_recv() {
        out.push(e);
    }
    out
}

fn video_seqs(events: &[ReaderEvent]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match e {
            ReaderEvent::Frame(f) if f.frame.track == VIDEO => Some(seq(f)),
            _ => None,
        })
        .collect()
}

#[test]
fn late_joiner_starts_at_latest_keyframe_at_once() {
    let registry = Registry::new(BusConfig::default());
    let mut publisher = registry.publish("live/cam1", peer()).unwrap();
    publisher.set_tracks(tracks());
    for n in 0..23 {
        publisher.push(video(n, 10));
        publisher.push(audio(n));
    }
    let mut reader = registry.subscribe("live/cam1", peer()).unwrap();
    let events = drain(&mut reader);
    assert!(matches!(&events[0], ReaderEvent::Tracks(t) if t.tracks.len() == 2));
    let ReaderEvent::Frame(first) = &events[1] else {
        panic!("{:?}", events[1])
    };
    assert!(first.frame.keyframe && first.frame.track == VIDEO);
    assert_eq!(video_seqs(&events), vec![20, 21, 22]);
}

#[test]
fn no_gap_or_duplicate_between_cache_and_live_frames() {
    let registry = Registry::new(BusConfig::default());
    let mut publisher = registry.publish("a", peer()).unwrap();
    publisher.set_tracks(tracks());
    for n in 0..15 {
        publisher.push(video(n, 10));
    }
    let mut reader = registry.subscribe("a", peer()).unwrap();
    for n in 15..40 {
        publisher.push(video(n, 10));
    }
    assert_eq!(
        video_seqs(&drain(&mut reader)),
        (10..40).collect::<Vec<_>>()
    );
}

#[test]
fn stalled_reader_is_dropped_to_a_keyframe_and_others_get_every_frame() {
    let registry = Registry::new(BusConfig {
        reader_queue_frames: 16,
        ..BusConfig::default()
    });
    let mut publisher = registry.publish("a", peer()).unwrap();
    publisher.set_tracks(tracks());
    let mut fast = registry.subscribe("a", peer()).unwrap();
    let mut stalled = registry.subscribe("a", peer()).unwrap();
    let mut fast_seen = Vec::new();
    for n in 0..1000 {
        publisher.push(video(n, 25));
        fast_seen.extend(video_seqs(&drain(&mut fast)));
    }
    assert_eq!(fast_seen, (0..1000).collect::<Vec<_>>());
    let events = drain(&mut stalled);
    // Bounded: the stalled reader holds at most the ring, not 1000 frames.
    assert!(events.len() <= 17, "{} events", events.len());
    assert!(
        events.iter().any(|e| matches!(e, ReaderEvent::Lost { .. })),
        "told it lost frames"
    );
    // The ring held no keyframe, so it waits for the next one (frame 1000) and resumes there.
    assert!(video_seqs(&events).is_empty());
    for n in 1000..1010 {
        publisher.push(video(n, 25));
    }
    assert_eq!(
        video_seqs(&drain(&mut stalled)),
        (1000..1010).collect::<Vec<_>>()
    );
    assert!(publisher.stream().counters().frames_dropped >= 1000 - 16);
}

#[test]
fn second_publisher_is_rejected_and_the_first_keeps_streaming() {
    let registry = Registry::new(BusConfig::default());
    let mut first = registry.publish("live/x", peer()).unwrap();
    first.set_tracks(tracks());
    let err = registry
        .publish("live/x", Peer::new("rtmp", None))
        .err()
        .unwrap();
    assert!(matches!(err, BusError::AlreadyPublishing { .. }), "{err}");
    let mut reader = registry.subscribe("live/x", peer()).unwrap();
    first.push(video(0, 1));
    assert_eq!(video_seqs(&drain(&mut reader)), vec![0]);
}

#[tokio::test]
async fn takeover_kicks_the_old_publisher() {
    let registry = Registry::new(BusConfig {
        publisher_takeover: true,
        ..BusConfig::default()
    });
    let mut first = registry.publish("x", peer()).unwrap();
    let _second = registry.publish("x", peer()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), first.kicked())
        .await
        .unwrap();
    drop(first);
    assert!(
        registry.get("x").is_some(),
        "the new publisher's stream stays"
    );
}

#[tokio::test]
async fn readers_end_cleanly_when_the_publisher_leaves() {
    let registry = Registry::new(BusConfig::default());
    let mut publisher = registry.publish("x", peer()).unwrap();
    publisher.set_tracks(tracks());
    let mut reader = registry.subscribe("x", peer()).unwrap();
    publisher.push(video(0, 10));
    drop(publisher);
    assert!(registry.get("x").is_none());
    assert!(matches!(reader.recv().await, Some(ReaderEvent::Tracks(_))));
    assert!(matches!(reader.recv().await, Some(ReaderEvent::Frame(_))));
    assert!(reader.recv().await.is_none());
    assert!(matches!(
        registry.subscribe("x", peer()),
        Err(BusError::NotFound(_))
    ));
}

#[tokio::test]
async fn track_changes_arrive_in_order_and_are_observable() {
    let registry = Registry::new(BusConfig::default());
    let mut publisher = registry.publish("x", peer()).unwrap();
    let stream = registry.get("x").unwrap();
    let mut watch = stream.tracks();
    let mut reader = registry.subscribe("x", peer()).unwrap();
    publisher.set_tracks(tracks()[..1].to_vec());
    publisher.push(video(0, 1));
    publisher.set_tracks(tracks());
    let events = drain(&mut reader);
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e {
            ReaderEvent::Tracks(t) => format!("tracks{}", t.tracks.len()),
            ReaderEvent::Frame(_) => "frame".into(),
            ReaderEvent::Lost { .. } => "lost".into(),
        })
        .collect();
    assert_eq!(kinds, vec!["tracks0", "tracks1", "frame", "tracks2"]);
    assert!(watch.has_changed().unwrap());
    assert_eq!(watch.borrow_and_update().tracks.len(), 2);
}

#[test]
fn reader_counts_by_protocol_follow_readers() {
    let registry = Registry::new(BusConfig::default());
    let _p = registry.publish("x", peer()).unwrap();
    let a = registry.subscribe("x", Peer::new("rtmp", None)).unwrap();
    let _b = registry.subscribe("x", Peer::new("rtmp", None)).unwrap();
    let _c = registry.subscribe("x", Peer::new("hls", None)).unwrap();
    assert_eq!(
        registry.get("x").unwrap().readers_by_protocol(),
        vec![("hls", 1), ("rtmp", 2)]
    );
    drop(a);
    assert_eq!(
        registry.totals().readers_by_protocol,
        vec![("hls", 1), ("rtmp", 1)]
    );
}

#[test]
fn stream_names_are_checked() {
    for ok in ["live/cam1", "a", "a.b-c_d/e"] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "/a", "a/", "a//b", "a/../b", "a b", "a?b", "é"] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn state_attached_by_a_layer_above_is_one_value_per_type() {
    #[derive(Default)]
    struct Views(std::sync::Mutex<Vec<&'static str>>);
    #[derive(Default)]
    struct Other(u8);
    let registry = Registry::new(BusConfig::default());
    let publisher = registry.publish("live/cam", peer()).unwrap();
    let stream = publisher.stream();
    stream.attached::<Views>().0.lock().unwrap().push("opus");
    assert_eq!(*stream.attached::<Views>().0.lock().unwrap(), ["opus"]);
    assert_eq!(stream.attached::<Other>().0, 0);
    assert!(Arc::ptr_eq(
        &stream.attached::<Views>(),
        &stream.attached::<Views>()
    ));
}

#[test]
fn readers_of_a_derived_view_count_on_its_source() {
    let registry = Registry::new(BusConfig::default());
    let mut publisher = registry.publish("live/cam", peer()).unwrap();
    publisher.set_tracks(tracks());
    let mut view = registry.derived_publisher(publisher.stream());
    view.set_tracks(tracks());
    assert!(registry
        .get("live/cam")
        .is_some_and(|s| Arc::ptr_eq(&s, publisher.stream())));
    let mut reader = Reader::new(view.stream().clone(), Peer::new("rtmp", None));
    assert_eq!(publisher.stream().readers_by_protocol(), [("rtmp", 1)]);
    view.push(video(0, 30));
    assert_eq!(video_seqs(&drain(&mut reader)), [0]);
    drop(reader);
    assert!(publisher.stream().readers_by_protocol().is_empty());
}

#[test]
fn a_new_stream_beyond_max_streams_is_refused_but_a_takeover_is_not_a_new_stream() {
    let registry = Registry::new(BusConfig {
        max_streams: 2,
        publisher_takeover: true,
        ..BusConfig::default()
    });
    let _a = registry.publish("a", peer()).unwrap();
    let b = registry.publish("b", peer()).unwrap();
    assert!(matches!(
        registry.publish("c", peer()),
        Err(BusError::TooManyStreams { max: 2, .. })
    ));
    let _b2 = registry
        .publish("b", peer())
        .expect("takeover of a name in use");
    drop(b);
    drop(_b2);
    let _c = registry.publish("c", peer()).expect("a slot came free");
}

#[test]
fn session_readers_beyond_the_limit_are_refused_and_their_slots_come_back() {
    let registry = Registry::new(BusConfig {
        max_readers_per_stream: 2,
        ..BusConfig::default()
    });
    let mut publisher = registry.publish("s", peer()).unwrap();
    publisher.set_tracks(tracks());
    let admit = || registry.admit_reader(registry.subscribe("s", peer()).unwrap());
    let first = admit().unwrap();
    let _second = admit().unwrap();
    // Readers that are not sessions (an HLS muxer, a push) do not count.
    let _muxer = registry.subscribe("s", peer()).unwrap();
    assert!(matches!(
        admit(),
        Err(BusError::TooManyReaders { max: 2, .. })
    ));
    drop(first);
    let _third = admit().expect("a slot came free");
}

#[test]
fn a_publisher_over_the_bitrate_limit_is_kicked() {
    let registry = Registry::new(BusConfig {
        max_publisher_bitrate_kbps: 100,
        bitrate_window: std::time::Duration::from_millis(100),
        ..BusConfig::default()
    });
    let mut publisher = registry.publish("fat", peer()).unwrap();
    publisher.set_tracks(tracks());
    // 10 frames of 10 kB within a little over the window: well over 100 kbit/s.
    for n in 0..10 {
        let mut frame = video(n, 10);
        frame.data = Bytes::from(vec![0u8; 10_000]);
        publisher.push(frame);
        std::thread::sleep(std::time::Duration::from_millis(12));
    }
    assert!(publisher.is_kicked());
    let mut slow = registry.publish("thin", peer()).unwrap();
    slow.set_tracks(tracks());
    for n in 0..10 {
        slow.push(video(n, 10));
        std::thread::sleep(std::time::Duration::from_millis(12));
    }
    assert!(!slow.is_kicked(), "8-byte frames are far under the limit");
}
