//! Tests of the RTSP ingest with hand-built packets: depacketizing, tracks from the SDP and the
//! stream, reordering without loss, and sender-report alignment.

use super::*;
use crate::bus::{Peer, Reader, ReaderEvent, Registry, TryRecv};
use crate::inputs::rtsp_pull::sdp;
use url::Url;

const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
    0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];
const IDR: &[u8] = &[0x65, 0x88, 0x80];

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0x78];
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

fn presentation(sdp_text: &str) -> Presentation {
    sdp::parse(
        sdp_text.as_bytes(),
        &Url::parse("rtsp://127.0.0.1/cam").unwrap(),
    )
    .unwrap()
}

/// H.264 (no sprop) + `audio`'s media section.
fn h264_with(audio: &str) -> Presentation {
    presentation(&format!(
        "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:v\r\n{audio}"
    ))
}

const OPUS: &str = "m=audio 0 RTP/AVP 98\r\na=rtpmap:98 opus/48000/2\r\na=control:a\r\n";

/// An ingest of the presentation's chosen streams, publishing as "cam", and a reader.
fn ingest(p: &Presentation, reorder: bool, t0: Instant) -> (Ingest, Reader) {
    let registry = Registry::new(Default::default());
    let mut ingest = Ingest::new(p, &sdp::choose(p), reorder, t0).unwrap();
    ingest.publisher = Some(registry.publish("cam", Peer::new("rtsp", None)).unwrap());
    let reader = registry.subscribe("cam", Peer::new("test", None)).unwrap();
    (ingest, reader)
}

/// (frames, number of tracks last announced).
fn drain(reader: &mut Reader) -> (Vec<Frame>, usize) {
    let (mut frames, mut tracks) = (Vec::new(), 0);
    while let TryRecv::Event(event) = reader.try_recv() {
        match event {
            ReaderEvent::Frame(f) => frames.push(f.frame.clone()),
            ReaderEvent::Tracks(t) => tracks = t.tracks.len(),
            ReaderEvent::Lost { .. } => panic!("lost frames"),
        }
    }
    (frames, tracks)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn h264_and_opus_share_the_arrival_timeline_until_reports_come() {
    let p = h264_with(OPUS);
    let t0 = Instant::now();
    let (mut ingest, mut reader) = ingest(&p, false, t0);
    // Random RTP offsets; the video timestamps wrap between frames.
    let v0 = u32::MAX - 1000;
    let a0 = 123_456u32;
    let video = |ingest: &mut Ingest, seq, ticks: u32, marker, payload: &[u8], at| {
        ingest
            .rtp(
                0,
                seq,
                v0.wrapping_add(ticks),
                marker,
                Bytes::copy_from_slice(payload),
                0,
                at,
            )
            .unwrap()
    };
    video(&mut ingest, 1, 0, false, &stap_a(&[SPS, PPS]), t0);
    video(&mut ingest, 2, 0, true, IDR, t0);
    // A P frame without marker: it ends when the next one starts.
    video(
        &mut ingest,
        3,
        3000,
        false,
        &[0x41, 0x9a, 0x02],
        t0 + ms(33),
    );
    // Opus arrives 20 ms after the first video packet: it starts at 20 ms.
    ingest
        .rtp(
            1,
            7,
            a0,
            true,
            Bytes::from_static(&[0xf8, 0xff, 0xfe]),
            0,
            t0 + ms(20),
        )
        .unwrap();
    video(&mut ingest, 4, 6000, true, &[0x41, 0x9a, 0x04], t0 + ms(66));
    let (frames, tracks) = drain(&mut reader);
    assert_eq!(tracks, 2);
    let got: Vec<(TrackId, i64, bool)> = frames
        .iter()
        .map(|f| (f.track, f.pts, f.keyframe))
        .collect();
    assert_eq!(
        got,
        [
            (VIDEO_TRACK, 0, true),
            (AUDIO_TRACK, 960, true),
            (VIDEO_TRACK, 3000, false),
            (VIDEO_TRACK, 6000, false),
        ]
    );
    assert_eq!(&frames[0].data[..], &[0, 0, 0, 3, 0x65, 0x88, 0x80]);
    // A loss (retina's count over TCP) drops video until the next IDR and is counted.
    video(
        &mut ingest,
        6,
        12000,
        true,
        &[0x41, 0x9a, 0x06],
        t0 + ms(133),
    );
    ingest
        .rtp(
            0,
            7,
            v0.wrapping_add(15000),
            true,
            Bytes::from_static(&[0x41, 0x9a]),
            2,
            t0,
        )
        .unwrap();
    assert_eq!(ingest.lost(), 2);
    assert_eq!(ingest.counters().lost.load(Ordering::Relaxed), 2);
    let (frames, _) = drain(&mut reader);
    assert_eq!(frames.len(), 1, "the frame before the loss only");
}

#[test]
fn reordered_udp_packets_are_not_lost_and_missing_ones_are() {
    let p = h264_with("");
    let t0 = Instant::now();
    let (mut ingest, mut reader) = ingest(&p, true, t0);
    let packet = |seq: u16| -> (u16, u32, bool, Vec<u8>) {
        match seq {
            0 => (0, 0, false, stap_a(&[SPS, PPS])),
            1 => (1, 0, true, IDR.to_vec()),
            s => (s, 3000 * u32::from(s - 1), true, vec![0x41, 0x9a, s as u8]),
        }
    };
    // Adjacent packets swapped, as the test's UDP relay does.
    for seq in [0, 1, 3, 2, 5, 4, 7, 6, 8] {
        let (s, ts, marker, payload) = packet(seq);
        ingest
            .rtp(0, s, ts, marker, Bytes::from(payload), 0, t0)
            .unwrap();
    }
    ingest.flush_gaps(t0 + ms(500)).unwrap();
    let (frames, _) = drain(&mut reader);
    assert_eq!(frames.len(), 8);
    assert!(frames.windows(2).all(|w| w[1].pts > w[0].pts));
    assert_eq!(ingest.lost(), 0);
    assert_eq!(ingest.gap_deadline(), None);
    // 10 never comes: 11 waits for it, then goes on after the wait, with 10 counted lost
    // (and the video waiting for its next IDR).
    let (s, ts, m, payload) = packet(9);
    ingest
        .rtp(0, s, ts, m, Bytes::from(payload), 0, t0)
        .unwrap();
    let t1 = t0 + ms(1000);
    let (s, ts, m, payload) = packet(11);
    ingest
        .rtp(0, s, ts, m, Bytes::from(payload), 0, t1)
        .unwrap();
    assert_eq!(ingest.gap_deadline(), Some(t1 + REORDER_WAIT));
    ingest.flush_gaps(t1 + ms(50)).unwrap();
    assert_eq!(ingest.lost(), 0, "still waiting");
    ingest.flush_gaps(t1 + REORDER_WAIT).unwrap();
    assert_eq!(ingest.lost(), 1);
    assert_eq!(ingest.gap_deadline(), None);
    let (frames, _) = drain(&mut reader);
    assert_eq!(frames.len(), 1, "9 only: 11 refers to the lost 10");
}

#[test]
fn sender_reports_align_audio_that_arrives_late() {
    // The camera's audio is sampled with the video but reaches us 300 ms later.
    let aac = "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
        a=fmtp:97 streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1190;sizelength=13;indexlength=3;indexdeltalength=3\r\n";
    let p = h264_with(aac);
    let t0 = Instant::now();
    let (mut ingest, mut reader) = ingest(&p, true, t0);
    let (v0, a0) = (1_000_000u32, 4_000_000_000u32);
    let ntp0: u64 = 0xe9a0_0000_0000_0000;
    let ntp = |secs: f64| ntp0 + (secs * 4_294_967_296.0) as u64;
    let au = |size: usize| {
        let mut p = vec![0, 16];
        p.extend_from_slice(&((size as u16) << 3).to_be_bytes());
        p.extend(std::iter::repeat_n(0x21, size));
        p
    };
    let mut vseq = 0u16;
    let mut aseq = 0u16;
    for i in 0..100u32 {
        // 25 fps video, 1024-sample AAC frames at 48 kHz, both from t = 0 on the camera.
        let t = f64::from(i) * 0.04;
        let at = t0 + Duration::from_secs_f64(t);
        let vts = v0.wrapping_add(3600 * i);
        if i == 0 {
            ingest
                .rtp(0, vseq, vts, false, Bytes::from(stap_a(&[SPS, PPS])), 0, at)
                .unwrap();
            vseq += 1;
        }
        let nal: &[u8] = if i == 0 { IDR } else { &[0x41, 0x9a, 0x01] };
        ingest
            .rtp(0, vseq, vts, true, Bytes::copy_from_slice(nal), 0, at)
            .unwrap();
        vseq += 1;
        let audio_t = f64::from(aseq) * 1024.0 / 48_000.0;
        if audio_t + 0.3 <= t {
            let ats = a0.wrapping_add(1024 * u32::from(aseq));
            ingest
                .rtp(1, aseq, ats, true, Bytes::from(au(20)), 0, at)
                .unwrap();
            aseq += 1;
        }
        if i == 50 {
            // Reports from the camera's clock: the same instant, each in its own RTP units.
            ingest.rtcp(0, &sr(ntp(2.0), v0.wrapping_add(180_000)));
            ingest.rtcp(1, &sr(ntp(2.0), a0.wrapping_add(96_000)));
        }
    }
    let (frames, tracks) = drain(&mut reader);
    assert_eq!(tracks, 2);
    // Output time minus camera time: video frame i was taken at 0.04 i s, audio frame n at
    // n * 1024 / 48000 s.
    let video: Vec<&Frame> = frames.iter().filter(|f| f.track == VIDEO_TRACK).collect();
    let audio: Vec<&Frame> = frames.iter().filter(|f| f.track == AUDIO_TRACK).collect();
    let video_at = |i: usize| video[i].pts as f64 / 90_000.0 - 0.04 * i as f64;
    // Before the reports audio is where it arrived, 300 ms (and a loop step) late.
    let audio_offset_before = audio[0].pts as f64 / 48_000.0;
    assert!(
        (audio_offset_before - video_at(0) - 0.3).abs() < 0.045,
        "before the reports audio starts where it arrived: {audio_offset_before}"
    );
    // After them, audio is where the camera put it. The last audio frame is n = aseq - 1.
    let last = audio.last().unwrap();
    let last_capture = f64::from(aseq - 1) * 1024.0 / 48_000.0;
    let offset_after = last.pts as f64 / 48_000.0 - last_capture;
    assert!(
        (offset_after - video_at(video.len() - 1)).abs() < 0.002,
        "after the reports audio and video share the camera's timeline: audio {offset_after}, video {}",
        video_at(video.len() - 1)
    );
    // The step back dropped the audio that would have gone backwards.
    assert!(audio.windows(2).all(|w| w[1].pts > w[0].pts));
}

/// A sender report (RFC 3550 6.4.1) without report blocks.
fn sr(ntp: u64, rtp: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
    p.extend_from_slice(&ntp.to_be_bytes());
    p.extend_from_slice(&rtp.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p
}

#[test]
fn h265_tracks_come_from_the_sdp_and_irap_pictures_start_them() {
    // gst-rtsp-server's sprops for x265 320x240 (protocols/rtp/testdata/gst.h265).
    let p = presentation(
        "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n\
         a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8koCQ;sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZKkkyv/wABAAFqDAwMCAAAAMAIAAAAwMh;sprop-pps=RAHBcrRCQA==\r\n",
    );
    let t0 = Instant::now();
    let (mut ingest, mut reader) = ingest(&p, false, t0);
    let trail = [0x02, 0x01, 0xd0, 0x11];
    let cra = [0x2a, 0x01, 0xaf, 0x09];
    ingest
        .rtp(0, 1, 0, true, Bytes::copy_from_slice(&trail), 0, t0)
        .unwrap();
    ingest
        .rtp(0, 2, 3600, true, Bytes::copy_from_slice(&cra), 0, t0)
        .unwrap();
    ingest
        .rtp(0, 3, 7200, true, Bytes::copy_from_slice(&trail), 0, t0)
        .unwrap();
    let (frames, tracks) = drain(&mut reader);
    assert_eq!(tracks, 1);
    assert_eq!(frames.len(), 2);
    assert!(frames[0].keyframe && !frames[1].keyframe);
    let stream = ingest.publisher.as_ref().unwrap().stream().clone();
    let set = stream.tracks().borrow().clone();
    let video = set.video().unwrap();
    assert_eq!(video.codec.rfc6381_codec(), "hvc1.1.6.L60.90");
    assert_eq!(video.codec.resolution(), Some((320, 240)));
    // A PACI packet is a payload structure we do not implement: the end, with a message.
    let e = ingest
        .rtp(
            0,
            4,
            10800,
            true,
            Bytes::from_static(&[100, 1, 0x26, 0, 0]),
            0,
            t0,
        )
        .unwrap_err();
    assert!(e.permanent && e.message.contains("PACI"), "{e:?}");
}

#[test]
fn parameter_set_changes_publish_new_tracks() {
    let p = h264_with("m=audio 0 RTP/AVP 0\r\n");
    let t0 = Instant::now();
    let (mut ingest, _reader) = ingest(&p, false, t0);
    let stream = ingest.publisher.as_ref().unwrap().stream().clone();
    // Audio before the video's parameter sets is held back: no tracks yet.
    ingest
        .rtp(1, 1, 0, true, Bytes::from_static(&[0xff; 160]), 0, t0)
        .unwrap();
    assert_eq!(stream.tracks().borrow().generation, 0);
    let idr = |ingest: &mut Ingest, seq: u16, sps: &[u8]| {
        let ts = 3000 * u32::from(seq);
        ingest
            .rtp(
                0,
                seq * 2,
                ts,
                false,
                Bytes::from(stap_a(&[sps, PPS])),
                0,
                t0,
            )
            .unwrap();
        ingest
            .rtp(0, seq * 2 + 1, ts, true, Bytes::from_static(IDR), 0, t0)
            .unwrap();
    };
    idr(&mut ingest, 0, SPS);
    let tracks = stream.tracks().borrow().clone();
    assert_eq!((tracks.generation, tracks.tracks.len()), (1, 2));
    assert_eq!(tracks.audio().unwrap().codec.rfc6381_codec(), "ulaw");
    // The same parameters again change nothing; different ones are a new track set.
    idr(&mut ingest, 1, SPS);
    assert_eq!(stream.tracks().borrow().generation, 1);
    let mut sps = SPS.to_vec();
    sps[3] = 0x1f; // level 3.1
    idr(&mut ingest, 2, &sps);
    let tracks = stream.tracks().borrow().clone();
    assert_eq!(tracks.generation, 2);
    assert_eq!(tracks.video().unwrap().codec.rfc6381_codec(), "avc1.42C01F");
    assert_eq!(stream.counters().frames_in, 3);
}

#[test]
fn sdp_configs_and_their_errors() {
    // sprop-parameter-sets give the H.264 track before any packet; AAC needs its config.
    let p = presentation(
        "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHtkAoC/5cBEAAAMAAQAAAwAyDxYuSA==,aMuDyyA=\r\n\
         m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
         a=fmtp:97 mode=AAC-hbr;config=1210;sizelength=13;indexlength=3\r\n",
    );
    let ingest = Ingest::new(&p, &sdp::choose(&p), false, Instant::now()).unwrap();
    assert_eq!(
        ingest.video.as_ref().unwrap().codec.rfc6381_codec(),
        "avc1.42C01E"
    );
    assert_eq!(ingest.audio.as_ref().unwrap().clock_rate, 44_100);
    let no_config = presentation(
        "v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 mode=AAC-hbr\r\n",
    );
    let e = Ingest::new(&no_config, &sdp::choose(&no_config), false, Instant::now())
        .err()
        .unwrap();
    assert!(e.permanent && e.message.contains("AAC"), "{e:?}");
    assert_eq!(hex("1210"), Some(vec![0x12, 0x10]));
    assert_eq!(hex("121"), None);
    assert_eq!(hex("zz"), None);
}
