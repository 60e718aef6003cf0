//! One audio converter: decode (AAC, Opus, G.711), resample, re-chunk and encode (AAC-LC or
//! Opus) with libavcodec and libswresample, through ffmpeg-next.
//!
//! Timing: output timestamps follow the source's. Each decoded frame's place on the output
//! timeline is its source pts; consecutive frames within [`TOLERANCE_MS`] of where the previous
//! one ended are taken as continuous (so millisecond-rounded RTMP timestamps do not cause
//! clicks), a larger gap is filled with silence and an overlap is cut from the new frame, so
//! later audio never shifts and sample-count drift is bounded by the tolerance. A jump of more
//! than [`MAX_FILL_MS`] (a source restart, a long outage) starts a new timeline there.
//! Encoder delay (AAC's 1024 priming samples, Opus's lookahead) is taken out by libavcodec's
//! packet timestamps, so a sample comes out with the time it went in with.

use super::need::AudioCodec;
use super::settings::AudioSettings;
use bytes::Bytes;
use ff::codec::Id;
use ff::format::sample::Type as SampleType;
use ff::format::Sample;
use ff::ChannelLayout;
use ffmpeg_next as ff;
use switchyard_media::aac::AudioSpecificConfig;
use switchyard_media::{CodecConfig, Frame, G711Law, Track, TrackId};

/// Frames this close (in ms) to where the previous one ended count as continuous.
pub const TOLERANCE_MS: i64 = 20;
/// A gap longer than this is not filled with silence: the output timeline restarts there.
pub const MAX_FILL_MS: i64 = 2000;

/// Why a converter could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("no {0} in this libavcodec")]
    MissingCodec(&'static str),
    #[error("{what}: {source}")]
    Ffmpeg {
        what: &'static str,
        source: ff::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

fn ffmpeg(what: &'static str) -> impl FnOnce(ff::Error) -> ConvertError {
    move |source| ConvertError::Ffmpeg { what, source }
}

/// Turns the frames of one audio track into frames of `target`.
pub struct Converter {
    track: TrackId,
    decoder: ff::decoder::Audio,
    resampler: Option<(ResampleInput, ff::software::resampling::Context)>,
    encoder: ff::encoder::Audio,
    encoder_format: Sample,
    in_clock: i64,
    out_rate: i64,
    layout: ChannelLayout,
    frame_size: usize,
    /// Samples waiting for a full encoder frame, per channel.
    fifo: Vec<Vec<f32>>,
    /// Output-clock time of `fifo[..][0]`; `None` before the first frame and after a restart.
    fifo_start: Option<i64>,
    /// Source-clock time where the previous input frame ended.
    next_in_pts: Option<i64>,
    /// The output track's configuration.
    pub output: CodecConfig,
}

/// What the resampler was made for; a change of any of these needs a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ResampleInput {
    format: Sample,
    layout: u64,
    rate: u32,
}

/// The result of feeding one frame.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Whether the input packet was rejected by the decoder (corrupt or not of this codec).
    pub corrupt: bool,
    /// Silence inserted for a gap, in output samples.
    pub filled: u64,
    /// Samples cut because they overlapped earlier audio.
    pub cut: u64,
}

/// Sets up libav* once per process: its logging goes quiet (the converter reports itself).
fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

/// Sample rate, channels and codec of a source audio track.
fn source_params(track: &Track) -> Result<(Id, u32, usize, Option<Bytes>), ConvertError> {
    Ok(match &track.codec {
        CodecConfig::Aac(asc) => (
            Id::AAC,
            asc.sample_rate,
            asc.channels.max(1) as usize,
            Some(asc.bytes.clone()),
        ),
        CodecConfig::Opus { channels, head } => {
            (Id::OPUS, 48_000, (*channels).max(1) as usize, head.clone())
        }
        CodecConfig::G711 { law, channels } => (
            match law {
                G711Law::ALaw => Id::PCM_ALAW,
                G711Law::MuLaw => Id::PCM_MULAW,
            },
            8000,
            (*channels).max(1) as usize,
            None,
        ),
        other => {
            return Err(ConvertError::Unsupported(format!(
                "{} is not audio this converter decodes",
                other.name()
            )))
        }
    })
}

impl Converter {
    /// A converter from `source` to `target`.
    pub fn new(
        source: &Track,
        target: AudioCodec,
        settings: &AudioSettings,
    ) -> Result<Self, ConvertError> {
        init();
        let (id, source_rate, source_channels, extradata) = source_params(source)?;
        let decoder = open_decoder(id, source_rate, source_channels, extradata.as_deref())?;
        // Two channels at most: a surround source is downmixed.
        let channels = source_channels.min(2);
        let out_rate = match target {
            AudioCodec::Opus => 48_000,
            AudioCodec::Aac if matches!(source_rate, 44_100 | 48_000) => source_rate,
            AudioCodec::Aac => 48_000,
        };
        let layout = ChannelLayout::default(channels as i32);
        let (encoder, encoder_format) = open_encoder(target, out_rate, layout, settings)?;
        let frame_size = match encoder.frame_size() {
            0 => 1024,
            n => n as usize,
        };
        let extradata = extradata_of(&encoder);
        let output = match target {
            AudioCodec::Aac => {
                let asc = AudioSpecificConfig::parse(extradata).map_err(|e| {
                    ConvertError::Unsupported(format!("the AAC encoder's config: {e}"))
                })?;
                CodecConfig::Aac(asc)
            }
            AudioCodec::Opus => CodecConfig::Opus {
                channels: channels as u8,
                head: (!extradata.is_empty()).then_some(extradata),
            },
        };
        Ok(Converter {
            track: source.id,
            decoder,
            resampler: None,
            encoder,
            encoder_format,
            in_clock: source.clock_rate.max(1) as i64,
            out_rate: out_rate as i64,
            layout,
            frame_size,
            fifo: vec![Vec::new(); channels],
            fifo_start: None,
            next_in_pts: None,
            output,
        })
    }

    /// The output track: the source's id with the target's configuration and clock.
    pub fn output_track(&self) -> Track {
        Track {
            id: self.track,
            codec: self.output.clone(),
            clock_rate: self.out_rate as u32,
        }
    }

    /// Forgets where the audio was: the next frame starts a new output timeline (after frames
    /// were lost upstream).
    pub fn restart_timeline(&mut self) {
        self.next_in_pts = None;
    }

    /// Feeds one source frame; appends the encoded frames it completes to `out`.
    pub fn push(&mut self, frame: &Frame, out: &mut Vec<Frame>) -> Pushed {
        let mut pushed = Pushed::default();
        let mut packet = ff::Packet::copy(&frame.data);
        packet.set_pts(Some(frame.pts));
        packet.set_dts(Some(frame.pts));
        if self.decoder.send_packet(&packet).is_err() {
            pushed.corrupt = true;
            return pushed;
        }
        let mut decoded = ff::frame::Audio::empty();
        loop {
            match self.decoder.receive_frame(&mut decoded) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(_) => {
                    pushed.corrupt = true;
                    break;
                }
            }
            if decoded.samples() == 0 || decoded.rate() == 0 {
                continue;
            }
            let pts = decoded.pts().unwrap_or(frame.pts);
            if let Err(e) = self.take_decoded(&decoded, pts, &mut pushed) {
                tracing::debug!(error = %e, "audio resampling failed; frame skipped");
                pushed.corrupt = true;
                continue;
            }
            self.encode_ready(out);
        }
        pushed
    }

    /// Places one decoded frame on the output timeline and adds its resampled samples.
    fn take_decoded(
        &mut self,
        decoded: &ff::frame::Audio,
        pts: i64,
        pushed: &mut Pushed,
    ) -> Result<(), ff::Error> {
        let duration = decoded.samples() as i64 * self.in_clock / decoded.rate() as i64;
        let tolerance = self.in_clock * TOLERANCE_MS / 1000;
        let max_fill = self.in_clock * MAX_FILL_MS / 1000;
        let mut skip_out = 0usize;
        match self.next_in_pts {
            Some(expected) if (pts - expected).abs() <= tolerance => {
                self.next_in_pts = Some(expected + duration);
            }
            Some(expected) if pts > expected && pts - expected <= max_fill => {
                let silence = rescale(pts - expected, self.in_clock, self.out_rate) as usize;
                for ch in &mut self.fifo {
                    ch.resize(ch.len() + silence, 0.0);
                }
                pushed.filled += silence as u64;
                self.next_in_pts = Some(pts + duration);
            }
            Some(expected) if pts < expected && expected - pts <= max_fill => {
                skip_out = rescale(expected - pts, self.in_clock, self.out_rate) as usize;
                self.next_in_pts = Some(expected.max(pts + duration));
            }
            _ => {
                // First frame, or a jump too large to bridge: a new timeline starts here.
                for ch in &mut self.fifo {
                    ch.clear();
                }
                self.resampler = None;
                self.fifo_start = Some(rescale(pts, self.in_clock, self.out_rate));
                self.next_in_pts = Some(pts + duration);
            }
        }
        // Planar f32 at the output rate and channel count (Opus to AAC at 48 kHz, AAC at 48 kHz
        // to Opus) goes to the FIFO as it is; anything else through the resampler.
        let as_is = decoded.format() == Sample::F32(SampleType::Planar)
            && i64::from(decoded.rate()) == self.out_rate
            && usize::from(decoded.channels()) == self.fifo.len();
        let resampled;
        let samples = if as_is {
            decoded
        } else {
            resampled = self.resample(decoded)?;
            &resampled
        };
        let n = samples.samples();
        let skip = skip_out.min(n);
        pushed.cut += skip as u64;
        for (c, ch) in self.fifo.iter_mut().enumerate() {
            let plane = &plane(samples, c)[..n * 4];
            ch.extend(
                plane
                    .chunks_exact(4)
                    .skip(skip)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(())
    }

    /// The decoded frame as planar f32 at the output rate and layout.
    fn resample(&mut self, decoded: &ff::frame::Audio) -> Result<ff::frame::Audio, ff::Error> {
        let input = ResampleInput {
            format: decoded.format(),
            layout: decoded.channel_layout().bits(),
            rate: decoded.rate(),
        };
        if self.resampler.as_ref().map(|(i, _)| *i) != Some(input) {
            let context = ff::software::resampling::Context::get(
                decoded.format(),
                layout_of(decoded),
                decoded.rate(),
                Sample::F32(SampleType::Planar),
                self.layout,
                self.out_rate as u32,
            )?;
            self.resampler = Some((input, context));
        }
        let (_, context) = self.resampler.as_mut().expect("made above");
        let capacity = decoded.samples() * self.out_rate as usize / decoded.rate() as usize + 64;
        let mut output =
            ff::frame::Audio::new(Sample::F32(SampleType::Planar), capacity, self.layout);
        context.run(decoded, &mut output)?;
        Ok(output)
    }

    /// Encodes every full frame waiting in the FIFO.
    fn encode_ready(&mut self, out: &mut Vec<Frame>) {
        let Some(mut start) = self.fifo_start else {
            return;
        };
        while self.fifo[0].len() >= self.frame_size {
            let mut frame =
                ff::frame::Audio::new(self.encoder_format, self.frame_size, self.layout);
            frame.set_rate(self.out_rate as u32);
            fill(&mut frame, &self.fifo, self.frame_size, self.encoder_format);
            for ch in &mut self.fifo {
                ch.drain(..self.frame_size);
            }
            frame.set_pts(Some(start));
            start += self.frame_size as i64;
            if self.encoder.send_frame(&frame).is_err() {
                continue;
            }
            self.receive_packets(out);
        }
        self.fifo_start = Some(start);
    }

    /// Ends the stream: what waits in the FIFO (padded with silence to a frame) and in the
    /// encoder comes out.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        if self.fifo_start.is_some() && !self.fifo[0].is_empty() {
            let padded = self.fifo[0].len().next_multiple_of(self.frame_size);
            for ch in &mut self.fifo {
                ch.resize(padded, 0.0);
            }
            self.encode_ready(out);
        }
        if self.encoder.send_eof().is_ok() {
            self.receive_packets(out);
        }
    }

    fn receive_packets(&mut self, out: &mut Vec<Frame>) {
        let mut packet = ff::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let (Some(pts), Some(data)) = (packet.pts(), packet.data()) else {
                continue;
            };
            // The first packet's priming samples come before the stream's time origin.
            if pts < 0 || data.is_empty() {
                continue;
            }
            out.push(Frame {
                track: self.track,
                pts,
                dts: pts,
                keyframe: true,
                data: Bytes::copy_from_slice(data),
            });
        }
    }
}

fn rescale(value: i64, from: i64, to: i64) -> i64 {
    ((value as i128 * to as i128 + (from as i128 / 2)).div_euclid(from as i128)) as i64
}

/// The frame's channel layout, or the default one for its channel count when it has none.
fn layout_of(frame: &ff::frame::Audio) -> ChannelLayout {
    let layout = frame.channel_layout();
    if layout.bits() == 0 {
        ChannelLayout::default(frame.channels() as i32)
    } else {
        layout
    }
}

/// Plane `c` of an audio frame. (ffmpeg-next's `data(c)` uses `linesize[c]`, which libavutil
/// sets only for the first plane of planar audio: every plane has `linesize[0]` bytes.)
fn plane(frame: &ff::frame::Audio, c: usize) -> &[u8] {
    assert!(c < frame.planes(), "plane {c} of {}", frame.planes());
    // SAFETY: the frame owns `planes()` buffers of `linesize[0]` bytes each.
    unsafe {
        let f = frame.as_ptr();
        std::slice::from_raw_parts(*(*f).extended_data.add(c), (*f).linesize[0] as usize)
    }
}

fn plane_mut(frame: &mut ff::frame::Audio, c: usize) -> &mut [u8] {
    assert!(c < frame.planes(), "plane {c} of {}", frame.planes());
    // SAFETY: as in `plane`, and the frame is borrowed mutably.
    unsafe {
        let f = frame.as_mut_ptr();
        std::slice::from_raw_parts_mut(*(*f).extended_data.add(c), (*f).linesize[0] as usize)
    }
}

/// Copies `n` samples per channel from `fifo` into `frame` in its sample format.
fn fill(frame: &mut ff::frame::Audio, fifo: &[Vec<f32>], n: usize, format: Sample) {
    let channels = fifo.len();
    match format {
        Sample::F32(SampleType::Planar) => {
            for (c, ch) in fifo.iter().enumerate() {
                let plane = plane_mut(frame, c);
                for (dst, s) in plane.chunks_exact_mut(4).zip(&ch[..n]) {
                    dst.copy_from_slice(&s.to_ne_bytes());
                }
            }
        }
        Sample::F32(SampleType::Packed) => {
            let data = frame.data_mut(0);
            for i in 0..n {
                for (c, ch) in fifo.iter().enumerate() {
                    let at = (i * channels + c) * 4;
                    data[at..at + 4].copy_from_slice(&ch[i].to_ne_bytes());
                }
            }
        }
        _ => {
            // 16-bit interleaved.
            let data = frame.data_mut(0);
            for i in 0..n {
                for (c, ch) in fifo.iter().enumerate() {
                    let v = (ch[i].clamp(-1.0, 1.0) * 32767.0) as i16;
                    let at = (i * channels + c) * 2;
                    data[at..at + 2].copy_from_slice(&v.to_ne_bytes());
                }
            }
        }
    }
}

fn open_decoder(
    id: Id,
    rate: u32,
    channels: usize,
    extradata: Option<&[u8]>,
) -> Result<ff::decoder::Audio, ConvertError> {
    let codec = ff::decoder::find(id).ok_or(ConvertError::MissingCodec(id_name(id)))?;
    let mut context = ff::codec::context::Context::new_with_codec(codec);
    // SAFETY: the context is ours and not yet opened; extradata is allocated with libavutil's
    // allocator (libavcodec frees it) with the padding libavcodec requires.
    unsafe {
        let ctx = context.as_mut_ptr();
        (*ctx).sample_rate = rate as i32;
        ff::ffi::av_channel_layout_default(&mut (*ctx).ch_layout, channels as i32);
        if let Some(extra) = extradata.filter(|e| !e.is_empty()) {
            let padded = extra.len() + ff::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
            let buf = ff::ffi::av_mallocz(padded) as *mut u8;
            if buf.is_null() {
                return Err(ConvertError::Unsupported("out of memory".into()));
            }
            std::ptr::copy_nonoverlapping(extra.as_ptr(), buf, extra.len());
            (*ctx).extradata = buf;
            (*ctx).extradata_size = extra.len() as i32;
        }
    }
    context
        .decoder()
        .audio()
        .map_err(ffmpeg("opening the decoder"))
}

fn open_encoder(
    target: AudioCodec,
    rate: u32,
    layout: ChannelLayout,
    settings: &AudioSettings,
) -> Result<(ff::encoder::Audio, Sample), ConvertError> {
    let (codec, bitrate) = match target {
        // libopus when libavcodec has it (Debian's does); the native encoder is experimental.
        AudioCodec::Opus => (
            ff::encoder::find_by_name("libopus")
                .or_else(|| ff::encoder::find(Id::OPUS))
                .ok_or(ConvertError::MissingCodec("Opus encoder"))?,
            settings.opus_bitrate,
        ),
        AudioCodec::Aac => (
            ff::encoder::find(Id::AAC).ok_or(ConvertError::MissingCodec("AAC encoder"))?,
            settings.aac_bitrate,
        ),
    };
    let supported: Vec<Sample> = codec
        .audio()
        .ok()
        .and_then(|a| a.formats().map(|f| f.collect()))
        .unwrap_or_default();
    let format = [
        Sample::F32(SampleType::Planar),
        Sample::F32(SampleType::Packed),
        Sample::I16(SampleType::Packed),
    ]
    .into_iter()
    .find(|f| supported.is_empty() || supported.contains(f))
    .ok_or_else(|| {
        ConvertError::Unsupported(format!("{} takes no sample format we write", codec.name()))
    })?;
    let mut context = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(ffmpeg("making the encoder"))?;
    context.set_rate(rate as i32);
    context.set_channel_layout(layout);
    context.set_format(format);
    context.set_bit_rate(bitrate as usize);
    context.set_time_base((1, rate as i32));
    context.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    if codec.name() == "opus" {
        context.compliance(ff::codec::Compliance::Experimental);
    }
    let mut options = ff::Dictionary::new();
    if codec.name() == "aac" {
        // libavcodec's AAC encoder searches scalefactors with its two-loop coder by default;
        // the fast coder takes under half the CPU (benches/audio_convert: 2.5 -> 1.1 % of a
        // core per stereo stream), for some quality at low bitrates; 128 kb/s has headroom.
        options.set("aac_coder", "fast");
    }
    let encoder = context
        .open_as_with(codec, options)
        .map_err(ffmpeg("opening the encoder"))?;
    Ok((encoder, format))
}

/// The encoder's out-of-band configuration (AAC's AudioSpecificConfig, Opus's OpusHead).
fn extradata_of(encoder: &ff::encoder::Audio) -> Bytes {
    // SAFETY: reads the opened encoder's own extradata buffer of extradata_size bytes.
    unsafe {
        let ctx = encoder.as_ptr();
        if (*ctx).extradata.is_null() || (*ctx).extradata_size <= 0 {
            return Bytes::new();
        }
        Bytes::copy_from_slice(std::slice::from_raw_parts(
            (*ctx).extradata,
            (*ctx).extradata_size as usize,
        ))
    }
}

fn id_name(id: Id) -> &'static str {
    match id {
        Id::AAC => "AAC decoder",
        Id::OPUS => "Opus decoder",
        Id::PCM_ALAW => "G.711 A-law decoder",
        Id::PCM_MULAW => "G.711 mu-law decoder",
        _ => "decoder",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEEP_AT: [f64; 2] = [1.0, 2.0];

    /// G.711 mu-law of a 16-bit sample (ITU-T G.711, by the segment table).
    fn mulaw(sample: i16) -> u8 {
        const BIAS: i32 = 0x84;
        let mut s = sample as i32;
        let sign = if s < 0 {
            s = -s;
            0x80
        } else {
            0
        };
        s = (s + BIAS).min(0x7fff);
        let exponent = (31 - s.leading_zeros() as i32 - 7).clamp(0, 7);
        let mantissa = (s >> (exponent + 3)) & 0x0f;
        !(sign | (exponent << 4) | mantissa) as u8
    }

    /// 8 kHz mono mu-law, 20 ms frames from `start_ms` for `ms`: silence with a 100 ms
    /// 1 kHz beep at each of [`BEEP_AT`].
    fn g711_frames(start_ms: i64, ms: i64) -> Vec<Frame> {
        (start_ms / 20..(start_ms + ms) / 20)
            .map(|i| {
                let data: Vec<u8> = (0..160)
                    .map(|k| {
                        let t = (i * 160 + k) as f64 / 8000.0;
                        let beep = BEEP_AT.iter().any(|b| t >= *b && t < b + 0.1);
                        let v = if beep {
                            (t * 1000.0 * std::f64::consts::TAU).sin() * 16000.0
                        } else {
                            0.0
                        };
                        mulaw(v as i16)
                    })
                    .collect();
                Frame {
                    track: TrackId(2),
                    pts: i * 160,
                    dts: i * 160,
                    keyframe: true,
                    data: data.into(),
                }
            })
            .collect()
    }

    fn g711_track() -> Track {
        Track {
            id: TrackId(2),
            codec: CodecConfig::G711 {
                law: G711Law::MuLaw,
                channels: 1,
            },
            clock_rate: 8000,
        }
    }

    fn convert_all(c: &mut Converter, frames: &[Frame]) -> (Vec<Frame>, Pushed) {
        let mut out = Vec::new();
        let mut total = Pushed::default();
        for f in frames {
            let p = c.push(f, &mut out);
            total.corrupt |= p.corrupt;
            total.filled += p.filled;
            total.cut += p.cut;
        }
        (out, total)
    }

    /// Decodes `frames` of `track` to mono f32 placed on its timeline (index = pts in the
    /// track's clock, from 0).
    fn decode_timeline(track: &Track, frames: &[Frame]) -> Vec<f32> {
        let (id, rate, channels, extra) = source_params(track).unwrap();
        let mut decoder = open_decoder(id, rate, channels, extra.as_deref()).unwrap();
        let mut timeline = Vec::new();
        for f in frames {
            let mut packet = ff::Packet::copy(&f.data);
            packet.set_pts(Some(f.pts));
            decoder.send_packet(&packet).unwrap();
            let mut decoded = ff::frame::Audio::empty();
            while decoder.receive_frame(&mut decoded).is_ok() {
                let n = decoded.samples();
                let at = f.pts as usize;
                if timeline.len() < at + n {
                    timeline.resize(at + n, 0.0);
                }
                let samples: Vec<f32> = match decoded.format() {
                    Sample::F32(SampleType::Planar) => plane(&decoded, 0)[..n * 4]
                        .chunks_exact(4)
                        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    Sample::F32(SampleType::Packed) => {
                        let ch = decoded.channels() as usize;
                        plane(&decoded, 0)[..n * 4 * ch]
                            .chunks_exact(4 * ch)
                            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .collect()
                    }
                    other => panic!("decoder format {other:?}"),
                };
                timeline[at..at + n].copy_from_slice(&samples);
            }
        }
        timeline
    }

    /// Times (s) where the signal rises above 0.1 after at least 200 ms below it.
    fn onsets(timeline: &[f32], rate: f64) -> Vec<f64> {
        let mut quiet_since = 0usize;
        let mut found = Vec::new();
        for (i, s) in timeline.iter().enumerate() {
            if s.abs() > 0.1 {
                if i - quiet_since > (0.2 * rate) as usize {
                    found.push(i as f64 / rate);
                }
                quiet_since = i;
            }
        }
        found
    }

    fn assert_onsets(found: &[f64], want: &[f64], what: &str) {
        assert_eq!(found.len(), want.len(), "{what}: onsets {found:?}");
        for (f, w) in found.iter().zip(want) {
            assert!(
                (f - w).abs() < 0.005,
                "{what}: beep at {f:.4} s, sent at {w} s"
            );
        }
    }

    fn assert_contiguous(frames: &[Frame], step: i64) {
        for w in frames.windows(2) {
            assert_eq!(w[1].pts - w[0].pts, step, "at pts {}", w[0].pts);
        }
    }

    #[test]
    fn beeps_keep_their_time_through_aac_and_opus() {
        let source = g711_track();
        let mut to_aac =
            Converter::new(&source, AudioCodec::Aac, &AudioSettings::default()).unwrap();
        let (mut aac, pushed) = convert_all(&mut to_aac, &g711_frames(0, 3000));
        assert_eq!(pushed, Pushed::default());
        // At the end, what waited in the FIFO and the encoder comes out.
        to_aac.finish(&mut aac);
        let aac_track = to_aac.output_track();
        assert_eq!(aac_track.clock_rate, 48_000);
        assert!(
            matches!(&aac_track.codec, CodecConfig::Aac(c) if c.object_type == 2 && c.channels == 1)
        );
        assert_contiguous(&aac, 1024);
        assert!(
            aac[0].pts < 1024,
            "starts at the source's start: {}",
            aac[0].pts
        );
        assert_onsets(
            &onsets(&decode_timeline(&aac_track, &aac), 48_000.0),
            &BEEP_AT,
            "AAC",
        );

        let mut to_opus =
            Converter::new(&aac_track, AudioCodec::Opus, &AudioSettings::default()).unwrap();
        let (opus, pushed) = convert_all(&mut to_opus, &aac);
        assert_eq!(pushed, Pushed::default());
        let opus_track = to_opus.output_track();
        assert!(matches!(
            opus_track.codec,
            CodecConfig::Opus { channels: 1, .. }
        ));
        assert_contiguous(&opus, 960);
        assert_onsets(
            &onsets(&decode_timeline(&opus_track, &opus), 48_000.0),
            &BEEP_AT,
            "Opus",
        );

        // Everything up to the input's end comes out.
        let mut tail = Vec::new();
        to_opus.finish(&mut tail);
        assert!(!tail.is_empty());
        assert_contiguous(&[&opus[..], &tail[..]].concat(), 960);
        let end = tail.last().unwrap().pts + 960;
        assert!(
            end >= 3 * 48_000,
            "output ends at {end}, input at {}",
            3 * 48_000
        );
    }

    #[test]
    fn a_gap_is_filled_with_silence_and_later_audio_keeps_its_time() {
        let source = g711_track();
        let mut c = Converter::new(&source, AudioCodec::Aac, &AudioSettings::default()).unwrap();
        // 0.5 s of input lost before the first beep.
        let mut frames = g711_frames(0, 400);
        frames.extend(g711_frames(900, 2100));
        let (aac, pushed) = convert_all(&mut c, &frames);
        assert_eq!(pushed.filled, 500 * 48, "{pushed:?}");
        assert_contiguous(&aac, 1024);
        let track = c.output_track();
        assert_onsets(
            &onsets(&decode_timeline(&track, &aac), 48_000.0),
            &BEEP_AT,
            "after a gap",
        );
    }

    #[test]
    fn overlapping_audio_is_cut_and_jitter_within_tolerance_is_ignored() {
        let source = g711_track();
        let mut c = Converter::new(&source, AudioCodec::Aac, &AudioSettings::default()).unwrap();
        let mut frames = g711_frames(0, 3000);
        // A frame sent again 100 ms late (its time already covered), and every frame's
        // timestamp rounded to milliseconds as RTMP carries them.
        frames.insert(30, frames[25].clone());
        for f in &mut frames {
            f.pts =
                (f.pts as f64 / 8.0).round() as i64 * 8 + [0, 3, -3][(f.pts / 160 % 3) as usize];
        }
        let (aac, pushed) = convert_all(&mut c, &frames);
        assert_eq!((pushed.filled, pushed.cut), (0, 160 * 6), "{pushed:?}");
        assert_contiguous(&aac, 1024);
        let track = c.output_track();
        assert_onsets(
            &onsets(&decode_timeline(&track, &aac), 48_000.0),
            &BEEP_AT,
            "with jitter",
        );
    }

    /// A source whose timestamps run 100 ppm fast or slow against its sample count (a camera's
    /// clock): over ten minutes, 60 ms. The output follows the timestamps, not the count, within
    /// the tolerance, by small fills or cuts.
    #[test]
    fn a_drifting_source_clock_is_followed_within_the_tolerance() {
        for ppm in [100i64, -100] {
            let source = g711_track();
            let mut c =
                Converter::new(&source, AudioCodec::Opus, &AudioSettings::default()).unwrap();
            let mut out = Vec::new();
            let mut pushed = Pushed::default();
            let silence = Bytes::from(vec![0xffu8; 160]);
            let frames = 10 * 60 * 50i64;
            let mut worst = 0i64;
            for i in 0..frames {
                let pts = i * 160 + i * 160 * ppm / 1_000_000;
                let frame = Frame {
                    track: TrackId(2),
                    pts,
                    dts: pts,
                    keyframe: true,
                    data: silence.clone(),
                };
                let before = out.len();
                let p = c.push(&frame, &mut out);
                pushed.filled += p.filled;
                pushed.cut += p.cut;
                // Each new output frame starts where the input timeline says (within the
                // tolerance and the frame and FIFO it may wait in).
                for f in &out[before..] {
                    let input_at = rescale(pts, 8000, 48_000);
                    worst = worst.max((input_at - f.pts - 960).abs());
                }
            }
            // The 20 ms tolerance, plus up to two 20 ms Opus frames waiting; uncorrected, the
            // drift alone would be 60 ms.
            assert!(
                worst < 48 * 60,
                "{ppm} ppm: output {worst} samples off the input's time"
            );
            let corrected = if ppm > 0 { pushed.filled } else { pushed.cut };
            assert!(
                corrected > 0 && corrected < 48 * 120,
                "{ppm} ppm: {pushed:?}"
            );
        }
    }

    #[test]
    fn a_long_jump_starts_a_new_timeline() {
        let source = g711_track();
        let mut c = Converter::new(&source, AudioCodec::Opus, &AudioSettings::default()).unwrap();
        let mut frames = g711_frames(0, 500);
        let mut later = g711_frames(0, 500);
        for f in &mut later {
            f.pts += 10 * 8000;
        }
        frames.extend(later);
        let (opus, pushed) = convert_all(&mut c, &frames);
        assert_eq!((pushed.filled, pushed.cut), (0, 0));
        let jump = opus
            .windows(2)
            .find(|w| w[1].pts - w[0].pts != 960)
            .unwrap();
        assert!(
            (jump[1].pts - 10 * 48_000).abs() < 960,
            "resumes at 10 s: {}",
            jump[1].pts
        );
    }

    /// Converts `frames`, every tenth replaced by `garbage(i, len)`; returns the output and
    /// how many pushes the converter called corrupt.
    fn convert_with_garbage(
        c: &mut Converter,
        frames: &[Frame],
        garbage: impl Fn(usize, usize) -> Vec<u8>,
    ) -> (Vec<Frame>, usize) {
        let mut out = Vec::new();
        let mut corrupt = 0;
        for (i, f) in frames.iter().enumerate() {
            let mut f = f.clone();
            if i % 10 == 5 {
                f.data = garbage(i, f.data.len()).into();
            }
            corrupt += c.push(&f, &mut out).corrupt as usize;
        }
        (out, corrupt)
    }

    #[test]
    fn corrupt_frames_are_counted_and_the_converter_goes_on() {
        let source = g711_track();
        let settings = AudioSettings::default();
        let mut to_aac = Converter::new(&source, AudioCodec::Aac, &settings).unwrap();
        let (aac, _) = convert_all(&mut to_aac, &g711_frames(0, 3000));
        let aac_track = to_aac.output_track();
        // Garbage, as a broken encoder or a bit flip would send.
        let mut to_opus = Converter::new(&aac_track, AudioCodec::Opus, &settings).unwrap();
        let (opus, corrupt) = convert_with_garbage(&mut to_opus, &aac, |i, len| {
            (0..len).map(|k| (k * 37 + i) as u8).collect()
        });
        let garbled = aac.len().div_ceil(10);
        assert!(
            corrupt >= garbled / 2,
            "{corrupt} of {garbled} seen as corrupt"
        );
        // Output kept coming to the end, without a hole.
        assert_contiguous(&opus, 960);
        assert!(opus.last().unwrap().pts > 48_000 * 29 / 10);

        // Opus garbage too.
        let opus_track = to_opus.output_track();
        let mut back = Converter::new(&opus_track, AudioCodec::Aac, &settings).unwrap();
        let (aac_again, corrupt) = convert_with_garbage(&mut back, &opus, |_, _| vec![0xff; 3]);
        assert!(corrupt > 0);
        assert!(aac_again.last().unwrap().pts > 48_000 * 28 / 10);
    }
}
