use super::*;
use crate::{fragment, init_segment, Sample, TrackFragment};
use bytes::Bytes;
use switchyard_flv::file::read_tags;
use switchyard_flv::{parse_audio, parse_video, AudioTag, VideoTag};
use switchyard_media::{validate_length_prefixed, Track, TrackId};

const VIDEO: u32 = 1;
const AUDIO: u32 = 2;
const VIDEO_RATE: u32 = 90_000;

/// The video and audio of `fixtures/ffmpeg-h264-high-bf2-aac.flv` (H.264 High with B-frames,
/// AAC) as tracks and samples with durations, video at 90 kHz, audio in milliseconds.
fn fixture() -> (Vec<Track>, Vec<Sample>, Vec<Sample>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/ffmpeg-h264-high-bf2-aac.flv"
    );
    let file = Bytes::from(std::fs::read(path).unwrap());
    let (mut tracks, mut video, mut audio) = (Vec::new(), Vec::new(), Vec::new());
    for tag in read_tags(&file).unwrap() {
        let ms = i64::from(tag.timestamp_ms);
        match tag.tag_type {
            9 => match parse_video(tag.body).unwrap().1 {
                VideoTag::SequenceStart(codec) => tracks.push(Track {
                    id: TrackId(VIDEO),
                    codec,
                    clock_rate: VIDEO_RATE,
                }),
                VideoTag::Frame {
                    keyframe,
                    composition_ms,
                    data,
                } => video.push(Sample {
                    dts: ms * 90,
                    pts: (ms + i64::from(composition_ms)) * 90,
                    duration: 0,
                    keyframe,
                    data,
                }),
                _ => {}
            },
            8 => match parse_audio(tag.body).unwrap().1 {
                AudioTag::SequenceStart(codec) => tracks.push(Track {
                    id: TrackId(AUDIO),
                    codec,
                    clock_rate: 1000,
                }),
                AudioTag::Frame { data, .. } => audio.push(Sample {
                    dts: ms,
                    pts: ms,
                    duration: 0,
                    keyframe: true,
                    data,
                }),
                _ => {}
            },
            _ => {}
        }
    }
    for samples in [&mut video, &mut audio] {
        for i in 0..samples.len() {
            let next = samples.get(i + 1).map_or(samples[i].dts + 1, |s| s.dts);
            samples[i].duration = (next - samples[i].dts) as u32;
        }
    }
    assert!(video.len() >= 25 && audio.len() >= 40 && tracks.len() == 2);
    (tracks, video, audio)
}

/// An init segment and a buffer of `styp` + fragments of `per_fragment` video samples each,
/// with the audio of the same time span in the same fragments (after the video, as the
/// outputs write it).
fn muxed(per_fragment: usize) -> (Bytes, Vec<u8>, Vec<Sample>, Vec<Sample>) {
    let (tracks, video, audio) = fixture();
    let init = init_segment(&tracks).unwrap();
    let mut data = styp();
    let mut audio_at = 0;
    for (n, chunk) in video.chunks(per_fragment).enumerate() {
        let until = chunk.last().unwrap().dts + i64::from(chunk.last().unwrap().duration);
        let mut frags = vec![TrackFragment {
            track: TrackId(VIDEO),
            samples: chunk.to_vec(),
        }];
        let mut a = Vec::new();
        while audio_at < audio.len() && audio[audio_at].dts * 90 < until {
            a.push(audio[audio_at].clone());
            audio_at += 1;
        }
        frags.push(TrackFragment {
            track: TrackId(AUDIO),
            samples: a,
        });
        data.extend_from_slice(&fragment(n as u32 + 1, &frags, &tracks).unwrap());
    }
    let audio = audio[..audio_at].to_vec();
    (init, data, video, audio)
}

fn styp() -> Vec<u8> {
    bx(
        b"styp",
        &[b"msdh".as_slice(), &[0; 4], b"msdh", b"msix"].concat(),
    )
}

fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = ((8 + payload.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

fn full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = (u32::from(version) << 24 | flags).to_be_bytes().to_vec();
    p.extend_from_slice(payload);
    bx(kind, &p)
}

fn assert_same(read: &[SampleInfo<'_>], written: &[Sample]) {
    assert_eq!(read.len(), written.len());
    for (i, (r, w)) in read.iter().zip(written).enumerate() {
        assert_eq!(r.decode_time as i64, w.dts, "sample {i}");
        assert_eq!(r.composition_offset, w.pts - w.dts, "sample {i}");
        assert_eq!(r.presentation_time(), i128::from(w.pts), "sample {i}");
        assert_eq!(r.duration, w.duration, "sample {i}");
        assert_eq!(r.is_sync, w.keyframe, "sample {i}");
        assert_eq!(r.data, &w.data[..], "sample {i}");
    }
}

#[test]
fn init_segment_of_our_muxer_reads_back() {
    let (tracks, _, _) = fixture();
    let init = InitInfo::parse(&init_segment(&tracks).unwrap()).unwrap();
    assert_eq!(init.tracks.len(), 2);
    let video = init.video().unwrap();
    assert_eq!((video.track_id, video.timescale), (VIDEO, VIDEO_RATE));
    assert_eq!(&video.handler, b"vide");
    assert_eq!(
        video.trex,
        Some(TrexDefaults {
            sample_description_index: 1,
            sample_duration: 0,
            sample_size: 0,
            sample_flags: 0x0101_0000,
        })
    );
    let audio = init.audio().unwrap();
    assert_eq!((audio.track_id, audio.timescale), (AUDIO, 1000));
    assert!(audio.is_audio() && !audio.is_video());
    assert_eq!(init.track(AUDIO), Some(audio));
    assert_eq!(init.track(7), None);
}

#[test]
fn our_fragments_read_back_sample_for_sample() {
    for per_fragment in [1, 7, 1000] {
        let (init, data, video, audio) = muxed(per_fragment);
        let init = InitInfo::parse(&init).unwrap();
        let read = read_fragments(&data, &init, VIDEO).unwrap();
        assert_same(&read, &video);
        assert!(read[0].is_sync && read.iter().filter(|s| s.is_sync).count() >= 1);
        assert!(
            read.iter().any(|s| s.composition_offset > 0),
            "B-frames reorder"
        );
        for s in &read {
            validate_length_prefixed(s.data).unwrap();
        }
        // The audio interleaved in the same mdats, skipped above, reads back too.
        let read = read_fragments(&data, &init, AUDIO).unwrap();
        assert_same(&read, &audio);
        // The callback form sees the same samples.
        let mut n = 0;
        let count = for_each_sample(&data, &init, VIDEO, |s| {
            assert_eq!(s.data, &video[n].data[..]);
            n += 1;
        })
        .unwrap();
        assert_eq!((count, n), (video.len(), video.len()));
    }
}

#[test]
fn one_fragment_per_message_reads_alone() {
    // What an MSE client gets: one moof + mdat per message, no styp.
    let (tracks, video, _) = fixture();
    let init = InitInfo::parse(&init_segment(&tracks).unwrap()).unwrap();
    for (i, s) in video.iter().enumerate().take(10) {
        let frag = TrackFragment {
            track: TrackId(VIDEO),
            samples: vec![s.clone()],
        };
        let msg = fragment(i as u32, &[frag], &tracks).unwrap();
        let read = read_fragments(&msg, &init, VIDEO).unwrap();
        assert_same(&read, std::slice::from_ref(s));
    }
}

#[test]
fn unknown_track_and_missing_moov_are_errors() {
    let (init, data, _, _) = muxed(5);
    let info = InitInfo::parse(&init).unwrap();
    assert_eq!(
        read_fragments(&data, &info, 9),
        Err(ReadError::UnknownTrack(9))
    );
    assert_eq!(InitInfo::parse(&data), Err(ReadError::Missing("moov")));
    assert_eq!(InitInfo::parse(&[]), Err(ReadError::Missing("moov")));
    // No moof at all: no samples, no error (an init segment, a styp alone).
    assert_eq!(read_fragments(&init, &info, VIDEO), Ok(vec![]));
}

/// xorshift64*, enough for reproducible mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutations that tend to hit box sizes, flags, counts and offsets.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut d = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len());
        match rng.below(7) {
            0 => d[at] ^= 1 << rng.below(8),
            1 => d[at] = rng.next() as u8,
            2 => d[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            3 => {
                let v = [0u32, 1, 7, 8, 16, 0xffff_ffff, 0x8000_0000][rng.below(7)];
                let end = (at + 4).min(d.len());
                d[at..end].copy_from_slice(&v.to_be_bytes()[..end - at]);
            }
            4 => d.truncate(at),
            5 => {
                let len = rng.below(16).min(d.len() - at);
                d.drain(at..at + len);
            }
            _ => {
                let len = rng.below(16);
                let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                d.splice(at..at, junk);
            }
        }
        if d.is_empty() {
            break;
        }
    }
    d
}

#[test]
fn every_truncation_of_a_fragment_is_an_error_or_fewer_samples() {
    let (init, data, video, _) = muxed(3);
    let info = InitInfo::parse(&init).unwrap();
    let full = read_fragments(&data, &info, VIDEO).unwrap();
    assert_eq!(full.len(), video.len());
    for cut in 0..data.len() {
        // Cut between two moof + mdat pairs: the samples before it.
        if let Ok(read) = read_fragments(&data[..cut], &info, VIDEO) {
            assert_eq!(read[..], full[..read.len()], "cut at {cut}");
        }
        // Garbage after whole fragments never hides them: the error comes after them.
        let mut seen = 0;
        let _ = for_each_sample(&data[..cut], &info, VIDEO, |_| seen += 1);
        assert!(seen <= full.len());
    }
    for cut in 0..init.len() {
        let _ = InitInfo::parse(&init[..cut]);
    }
}

#[test]
fn random_mutations_never_panic_and_samples_stay_in_the_buffer() {
    let (init, data, _, _) = muxed(4);
    let info = InitInfo::parse(&init).unwrap();
    let first_fragment_end = {
        let mut b = Boxes::new(&data, 0);
        b.next(); // styp
        b.next(); // moof
        b.next().unwrap().unwrap(); // mdat
        b.pos
    };
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (mut ok, mut errors) = (0, 0);
    for round in 0..20_000 {
        let source: &[u8] = if round % 2 == 0 {
            &data[..first_fragment_end]
        } else {
            &data
        };
        let m = mutate(&mut rng, source);
        let range = m.as_ptr_range();
        match read_fragments(&m, &info, VIDEO) {
            Ok(samples) => {
                ok += 1;
                for s in samples {
                    let r = s.data.as_ptr_range();
                    assert!(range.start <= r.start && r.end <= range.end);
                }
            }
            Err(e) => {
                errors += 1;
                let _ = e.to_string();
            }
        }
        let _ = read_fragments(&m, &info, AUDIO);
        if round % 4 == 0 {
            let m = mutate(&mut rng, &init);
            if let Ok(i) = InitInfo::parse(&m) {
                if let Some(v) = i.video() {
                    let _ = read_fragments(&data, &i, v.track_id);
                }
            }
        }
    }
    assert!(ok > 100 && errors > 100, "{ok} read, {errors} refused");
}

#[test]
fn a_huge_sample_count_without_sample_fields_is_refused_at_once() {
    let (init, _, _, _) = muxed(5);
    let info = InitInfo::parse(&init).unwrap();
    // tfhd with default size 0 and default-base-is-moof; trun: u32::MAX samples, no fields.
    let traf = |track: u32| {
        bx(
            b"traf",
            &[
                full(
                    b"tfhd",
                    0,
                    0x02_0010,
                    &[track.to_be_bytes(), [0; 4]].concat(),
                ),
                full(b"trun", 0, 0, &u32::MAX.to_be_bytes()),
            ]
            .concat(),
        )
    };
    for (track, ask) in [(VIDEO, VIDEO), (AUDIO, VIDEO)] {
        let data = [bx(b"moof", &traf(track)), bx(b"mdat", &[])].concat();
        let result = read_fragments(&data, &info, ask);
        assert!(
            matches!(result, Err(ReadError::Invalid { what: "trun", .. })),
            "{result:?}"
        );
    }
}

/// A moof + mdat made by hand, for what our muxer never writes.
#[test]
fn defaults_precedence_and_offsets_without_default_base_is_moof() {
    let trex = |id: u32, duration: u32, size: u32, flags: u32| {
        full(
            b"trex",
            0,
            0,
            &[id, 1, duration, size, flags]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect::<Vec<_>>(),
        )
    };
    let trak = |id: u32, handler: &[u8; 4], timescale: u32| {
        let mut tkhd = vec![0u8; 16]; // creation, modification (version 1)
        tkhd.extend_from_slice(&id.to_be_bytes());
        tkhd.extend_from_slice(&[0; 60]);
        let mdhd = full(
            b"mdhd",
            0,
            0,
            &[&[0u8; 8][..], &timescale.to_be_bytes(), &[0; 4]].concat(),
        );
        let hdlr = full(b"hdlr", 0, 0, &[&[0u8; 4][..], handler, &[0; 13]].concat());
        bx(
            b"trak",
            &[
                full(b"tkhd", 1, 3, &tkhd),
                bx(b"mdia", &[mdhd, hdlr].concat()),
            ]
            .concat(),
        )
    };
    let moov = bx(
        b"moov",
        &[
            trak(1, b"soun", 48_000),
            trak(2, b"vide", 12_800),
            bx(
                b"mvex",
                &[trex(1, 1024, 3, 0), trex(2, 512, 0, 0x0101_0000)].concat(),
            ),
        ]
        .concat(),
    );
    let init = [bx(b"ftyp", b"isom\0\0\0\0isom"), moov].concat();
    let info = InitInfo::parse(&init).unwrap();
    assert_eq!(info.video().unwrap().track_id, 2);
    assert_eq!(info.video().unwrap().timescale, 12_800);
    assert_eq!(info.audio().unwrap().trex.unwrap().sample_size, 3);

    let words = |v: &[u32]| v.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    // traf 1 (audio): no flags in tfhd, sizes from trex (3 bytes x 2), no data offset: data at
    // the moof's start (the first traf). traf 2 (video): neither base offset: its data starts
    // where the audio's ended; trun 1 with first_sample_flags (sync) then the tfhd default
    // (non-sync), v0 unsigned composition offsets; trun 2 without a data offset follows it,
    // with per-sample flags and durations, the tfhd default duration absent from it.
    let audio_traf = |data_offset: i32| {
        bx(
            b"traf",
            &[
                full(b"tfhd", 0, 0, &words(&[1])),
                full(b"tfdt", 0, 0, &words(&[4800])),
                full(
                    b"trun",
                    0,
                    0x01,
                    &[words(&[2]), data_offset.to_be_bytes().to_vec()].concat(),
                ),
            ]
            .concat(),
        )
    };
    let video_traf = bx(
        b"traf",
        &[
            // default duration 512 from trex is overridden by tfhd's 256; flags 0x20: default
            // flags non-sync (tfhd).
            full(b"tfhd", 0, 0x08 | 0x20, &words(&[2, 256, 0x0001_0000])),
            full(b"tfdt", 1, 0, &1_000_000u64.to_be_bytes()),
            full(
                b"trun",
                0,
                0x01 | 0x04 | 0x200 | 0x800,
                &words(&[2, 0, 0x0200_0000, 4, 512, 5, 0]),
            ),
            full(
                b"trun",
                1,
                0x100 | 0x200 | 0x400 | 0x800,
                &words(&[1, 300, 6, 0, (-256i32) as u32]),
            ),
        ]
        .concat(),
    );
    let build = |audio_offset: i32, video_offset: u32| {
        let video_traf = {
            let mut v = video_traf.clone();
            // The first trun's data_offset is the 4 bytes after its sample_count.
            let trun_at = v.windows(4).position(|w| w == b"trun").unwrap();
            v[trun_at + 12..trun_at + 16].copy_from_slice(&video_offset.to_be_bytes());
            v
        };
        bx(
            b"moof",
            &[
                full(b"mfhd", 0, 0, &words(&[1])),
                audio_traf(audio_offset),
                video_traf,
            ]
            .concat(),
        )
    };
    let moof_len = build(0, 0).len();
    let payload = b"AAAaaaVVVVvvvvvWWWWWW";
    // An mdat with a 64-bit box size (a 16-byte header).
    let mut mdat = 1u32.to_be_bytes().to_vec();
    mdat.extend_from_slice(b"mdat");
    mdat.extend_from_slice(&(16 + payload.len() as u64).to_be_bytes());
    mdat.extend_from_slice(payload);
    let data = [build(moof_len as i32 + 16, 0), mdat].concat();
    let audio = read_fragments(&data, &info, 1).unwrap();
    assert_eq!(audio.len(), 2);
    assert_eq!((audio[0].data, audio[1].data), (&b"AAA"[..], &b"aaa"[..]));
    assert_eq!((audio[0].decode_time, audio[1].decode_time), (4800, 5824));
    assert!(audio[0].is_sync && audio[1].is_sync);
    let video = read_fragments(&data, &info, 2).unwrap();
    let summary: Vec<_> = video
        .iter()
        .map(|s| {
            (
                s.decode_time,
                s.composition_offset,
                s.duration,
                s.is_sync,
                s.data,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1_000_000, 512, 256, true, &b"VVVV"[..]),
            (1_000_256, 0, 256, false, &b"vvvvv"[..]),
            (1_000_512, -256, 300, true, &b"WWWWWW"[..]),
        ]
    );
    // A box size of 0 runs to the end: the same mdat written that way (an 8-byte header).
    let open = [
        build(moof_len as i32 + 8, 0),
        0u32.to_be_bytes().to_vec(),
        b"mdat".to_vec(),
        payload.to_vec(),
    ]
    .concat();
    assert_eq!(read_fragments(&open, &info, 2).unwrap(), video);
    // A data offset pointing before the buffer or past it is an error, not a panic.
    let bad = [build(-100, 0), data[moof_len..].to_vec()].concat();
    assert!(matches!(
        read_fragments(&bad, &info, 1),
        Err(ReadError::SampleOutside { .. })
    ));
    let bad = [build(moof_len as i32 + 16, 1000), data[moof_len..].to_vec()].concat();
    assert!(matches!(
        read_fragments(&bad, &info, 2),
        Err(ReadError::SampleOutside { .. })
    ));
}

/// Runs a command, or returns None (and says so) if it is not installed.
fn run(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match std::process::Command::new(program).args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(out)
        }
        Err(e) => {
            eprintln!("skipped: {program} not found ({e})");
            None
        }
    }
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-fmp4-reader-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One packet as ffprobe shows it: (dts, pts - dts, duration, size, keyframe).
type Packet = (i64, i64, u64, usize, bool);

/// ffprobe's packets of the video stream.
fn ffprobe_packets(path: &str) -> Option<Vec<Packet>> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=dts,pts,duration,size,flags",
            "-of",
            "csv=p=0",
            path,
        ],
    )?;
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                // Order of fields as ffprobe prints them: pts, dts, duration, size, flags.
                let pts: i64 = f[0].parse().unwrap();
                let dts: i64 = f[1].parse().unwrap();
                (
                    dts,
                    pts - dts,
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[4].starts_with('K'),
                )
            })
            .collect(),
    )
}

/// The same samples as ffprobe sees, decode times counted from the first.
fn compare_with_ffprobe(samples: &[SampleInfo<'_>], probed: &[Packet]) {
    assert_eq!(samples.len(), probed.len());
    let (dts0, probed_dts0) = (samples[0].decode_time as i64, probed[0].0);
    for (i, (s, p)) in samples.iter().zip(probed).enumerate() {
        let ours = (
            s.decode_time as i64 - dts0,
            s.composition_offset,
            u64::from(s.duration),
            s.data.len(),
            s.is_sync,
        );
        assert_eq!(ours, (p.0 - probed_dts0, p.1, p.2, p.3, p.4), "sample {i}");
        validate_length_prefixed(s.data).unwrap();
    }
    assert!(samples.iter().filter(|s| s.is_sync).count() >= 3);
    assert!(samples.iter().any(|s| s.composition_offset != 0));
}

const ENCODE: &[&str] = &[
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=160x96:rate=25",
    "-f",
    "lavfi",
    "-i",
    "sine=sample_rate=48000",
    "-t",
    "1.2",
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-bf",
    "2",
    "-g",
    "10",
    "-c:a",
    "aac",
];

#[test]
fn ffmpeg_fragmented_mp4_reads_as_ffprobe_sees_it() {
    let dir = TempDir::new("mp4");
    // With default-base-is-moof (CMAF), and without it (tfhd base_data_offset, the position
    // in the file).
    for (name, flags) in [
        ("moof.mp4", "frag_keyframe+empty_moov+default_base_moof"),
        ("base.mp4", "frag_keyframe+empty_moov"),
        ("every.mp4", "frag_every_frame+empty_moov+default_base_moof"),
    ] {
        let path = dir.0.join(name);
        let path = path.to_str().unwrap();
        let args = [ENCODE, &["-f", "mp4", "-movflags", flags, "-y", path]].concat();
        if run("ffmpeg", &args).is_none() {
            return;
        }
        let Some(probed) = ffprobe_packets(path) else {
            return;
        };
        let file = std::fs::read(path).unwrap();
        // ffmpeg's init segment is the ftyp + moov at the file's start; the reader skips them.
        let init = InitInfo::parse(&file).unwrap();
        let video = init.video().unwrap();
        assert_eq!(init.tracks.len(), 2, "{name}");
        let samples = read_fragments(&file, &init, video.track_id).unwrap();
        compare_with_ffprobe(&samples, &probed);
        let audio = init.audio().unwrap().track_id;
        assert!(read_fragments(&file, &init, audio).unwrap().len() > 40);
    }
}

#[test]
fn ffmpeg_hls_fmp4_segments_read_as_ffprobe_sees_them() {
    let dir = TempDir::new("hls");
    let playlist = dir.0.join("index.m3u8");
    let playlist = playlist.to_str().unwrap();
    let args = [
        ENCODE,
        &[
            "-f",
            "hls",
            "-hls_segment_type",
            "fmp4",
            "-hls_time",
            "0.4",
            "-hls_list_size",
            "0",
            "-y",
            playlist,
        ],
    ]
    .concat();
    if run("ffmpeg", &args).is_none() {
        return;
    }
    let text = std::fs::read_to_string(playlist).unwrap();
    let init = std::fs::read(dir.0.join("init.mp4")).unwrap();
    let info = InitInfo::parse(&init).unwrap();
    let video = info.video().unwrap().track_id;
    let mut whole = init.clone();
    let mut samples = 0;
    let mut segments = Vec::new();
    for line in text.lines().filter(|l| l.ends_with(".m4s")) {
        let segment = std::fs::read(dir.0.join(line)).unwrap();
        let read = read_fragments(&segment, &info, video).unwrap();
        assert!(read[0].is_sync, "{line} starts with a keyframe");
        samples += read.len();
        whole.extend_from_slice(&segment);
        segments.push(segment);
    }
    assert!(segments.len() >= 3);
    let path = dir.0.join("whole.mp4");
    std::fs::write(&path, &whole).unwrap();
    let Some(probed) = ffprobe_packets(path.to_str().unwrap()) else {
        return;
    };
    let read = read_fragments(&whole, &info, video).unwrap();
    assert_eq!(read.len(), samples);
    compare_with_ffprobe(&read, &probed);
}
