//! Fuzzes an RTMP server session after the handshake (`switchyard::rtmp::RtmpSession`, what
//! every connection on port 1935 runs): rml_rtmp's chunk stream and session state (RTMP spec,
//! Adobe 2012, 5.3 and 7.2), and our handling of its events: `connect`, `publish` and `play`
//! with stream keys and query strings, `@setDataFrame`/`onMetaData`, audio and video messages
//! into the FLV parsers and the bus (`switchyard::inputs::rtmp::RtmpIngest`).
//!
//! Input: a byte that picks the size of the reads (1, 7, 64, 128, 1000, 4096, 65536 bytes or
//! all at once), then the bytes a client sends after the handshake. Invariants beyond "no
//! panic": what a publisher sends reaches a reader of the stream as frames whose `dts <= pts`,
//! whose decode times increase per track and that belong to a published track; a session that
//! ends frees the stream name. A panic inside rml_rtmp's chunk parser is not a crash here:
//! `RtmpSession` catches it and ends the session with an error (its quirk policy), so the
//! target lets exactly those through to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::Once;
use switchyard::bus::{BusConfig, Peer, Reader, ReaderEvent, Registry, TryRecv};
use switchyard::rtmp::{Flow, RtmpSession};
use switchyard_media::TrackId;

const READ_SIZES: [usize; 8] = [1, 7, 64, 128, 1000, 4096, 65536, usize::MAX];

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
}

/// Wraps libFuzzer's panic hook (which aborts on every panic) so that a panic raised in
/// rml_rtmp or rml_amf0 goes on to `RtmpSession`'s `catch_unwind`. One that nothing catches
/// still ends in libfuzzer-sys's own `catch_unwind`, which aborts: no crash is hidden.
fn let_rml_rtmp_panics_through() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let trace = std::backtrace::Backtrace::force_capture().to_string();
            if trace.contains("rml_rtmp::") || trace.contains("rml_amf0::") {
                return;
            }
            fuzzer_hook(info);
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_rml_rtmp_panics_through();
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let read = READ_SIZES[usize::from(selector & 7)];
    let registry = Registry::new(BusConfig::default());
    RUNTIME.with(|runtime| runtime.block_on(session(&registry, input, read)));
    assert!(
        registry.list().is_empty(),
        "a finished session left its stream"
    );
});

async fn session(registry: &Registry, input: &[u8], read: usize) {
    let peer = "192.0.2.1:50000".parse().unwrap();
    let mut reads = input.chunks(read.min(input.len().max(1)));
    let first = reads.next().unwrap_or_default();
    let Ok(mut session) = RtmpSession::start(peer, 4096, Default::default(), first, registry).await else {
        return;
    };
    let mut watcher = None;
    for received in reads {
        watch(registry, &session, &mut watcher);
        match session.handle_input(received, registry).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) | Err(_) => break,
        }
        assert!(session.take_output().iter().all(|b| !b.is_empty()));
        if let Some(w) = &mut watcher {
            w.check();
        }
    }
    watch(registry, &session, &mut watcher);
    if let Some(w) = &mut watcher {
        w.check();
    }
}

/// Subscribes to the stream once the session publishes one.
fn watch(registry: &Registry, session: &RtmpSession, watcher: &mut Option<Watcher>) {
    if watcher.is_some() || !session.is_publishing() {
        return;
    }
    let streams = registry.list();
    assert_eq!(streams.len(), 1, "a publishing session has its stream");
    let reader = registry
        .subscribe(streams[0].name(), Peer::new("fuzz", None))
        .expect("a reader of the published stream");
    *watcher = Some(Watcher {
        reader,
        tracks: Vec::new(),
        last_dts: HashMap::new(),
    });
}

/// A reader of the published stream and what it saw.
struct Watcher {
    reader: Reader,
    tracks: Vec<TrackId>,
    last_dts: HashMap<TrackId, i64>,
}

impl Watcher {
    fn check(&mut self) {
        while let TryRecv::Event(event) = self.reader.try_recv() {
            match event {
                ReaderEvent::Tracks(set) => {
                    self.tracks = set.tracks.iter().map(|t| t.id).collect();
                }
                ReaderEvent::Frame(f) => {
                    let frame = &f.frame;
                    assert!(self.tracks.contains(&frame.track), "a frame of no track");
                    assert!(
                        frame.dts <= frame.pts,
                        "dts {} > pts {}",
                        frame.dts,
                        frame.pts
                    );
                    if let Some(last) = self.last_dts.insert(frame.track, frame.dts) {
                        assert!(frame.dts > last, "dts {} after {last}", frame.dts);
                    }
                }
                ReaderEvent::Lost { .. } => self.last_dts.clear(),
            }
        }
    }
}
