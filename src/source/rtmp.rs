//! The source over RTMP: publishes through the project's RTMP client (`crate::rtmp::client`),
//! metadata and sequence headers first, then frames from a keyframe; H.265 goes as Enhanced
//! RTMP `hvc1` (veovera/enhanced-rtmp v2). Timestamps are the source's timeline, which goes
//! on across reconnections.

use super::file::{FileFrame, SourceFile};
use super::sink::{stamp_now, Sink, SinkError};
use crate::rtmp::client::{ClientError, RtmpClient, RtmpUrl, TlsTrust};
use rml_rtmp::sessions::StreamMetadata;
use switchyard_media::{CodecConfig, MediaKind};
use tokio::time::Instant;

pub struct RtmpSink {
    url: RtmpUrl,
    trust: TlsTrust,
    client: Option<RtmpClient>,
}

impl RtmpSink {
    pub fn new(url: RtmpUrl) -> Result<RtmpSink, ClientError> {
        Ok(RtmpSink {
            url,
            trust: TlsTrust::new("")?,
            client: None,
        })
    }

    fn error(&self, e: ClientError) -> SinkError {
        match e {
            ClientError::Refused(reason) => SinkError::Refused {
                target: self.target(),
                reason,
            },
            e => SinkError::Failed {
                target: self.target(),
                reason: e.to_string(),
            },
        }
    }

    fn client(&mut self) -> Result<&mut RtmpClient, SinkError> {
        let target = self.target();
        self.client.as_mut().ok_or(SinkError::Failed {
            target,
            reason: "not connected".into(),
        })
    }
}

impl Sink for RtmpSink {
    fn target(&self) -> String {
        self.url.redacted()
    }

    async fn connect(&mut self, file: &SourceFile, timestamp_ms: u64) -> Result<(), SinkError> {
        self.client = None;
        let mut client = RtmpClient::connect(&self.url, &self.trust)
            .await
            .map_err(|e| self.error(e))?;
        client
            .publish(&self.url.key)
            .await
            .map_err(|e| self.error(e))?;
        let ts = timestamp_ms as u32;
        let headers = client
            .queue_metadata(&metadata(file))
            .and_then(|()| client.queue_video(file.video_sequence_header(), ts))
            .and_then(|()| match file.audio_sequence_header() {
                Some(header) => client.queue_audio(header, ts),
                None => Ok(()),
            });
        headers.map_err(|e| self.error(e))?;
        client.flush().await.map_err(|e| self.error(e))?;
        self.client = Some(client);
        Ok(())
    }

    fn established(&self) -> bool {
        self.client.is_some()
    }

    async fn send(
        &mut self,
        file: &SourceFile,
        frame: &FileFrame,
        timestamp_ms: u64,
    ) -> Result<(), SinkError> {
        let ts = timestamp_ms as u32;
        let client = self.client()?;
        let queued = match frame.kind {
            MediaKind::Video => {
                client.queue_video(file.video_body(frame, &stamp_now(*b"rtmp")), ts)
            }
            MediaKind::Audio => match file.audio_body(frame) {
                Some(body) => client.queue_audio(body, ts),
                None => Ok(()),
            },
        };
        let sent = match queued {
            Ok(()) => client.flush().await.map(drop),
            Err(e) => Err(e),
        };
        sent.map_err(|e| {
            self.client = None;
            self.error(e)
        })
    }

    async fn wait_until(&mut self, until: Instant) -> Result<(), SinkError> {
        let client = self.client()?;
        loop {
            // Acknowledgements and pings from the server are answered; a closed or reset
            // connection shows here first.
            let read = tokio::select! {
                _ = tokio::time::sleep_until(until) => return Ok(()),
                r = client.read_events() => r,
            };
            if let Err(e) = read {
                self.client = None;
                return Err(self.error(e));
            }
        }
    }

    async fn close(&mut self) {
        self.client = None;
    }
}

/// `@setDataFrame onMetaData`: picture size, codecs, frame rate.
fn metadata(file: &SourceFile) -> StreamMetadata {
    let mut m = StreamMetadata::new();
    if let Some((w, h)) = file.resolution() {
        m.video_width = Some(w);
        m.video_height = Some(h);
    }
    if matches!(file.video, CodecConfig::H264(_)) {
        m.video_codec_id = Some(7);
    }
    m.video_frame_rate = Some(1000.0 / file.frame_interval_ms as f32);
    if let Some(CodecConfig::Aac(c)) = &file.audio {
        m.audio_codec_id = Some(10);
        m.audio_sample_rate = Some(c.sample_rate);
        m.audio_channels = Some(c.channels as u32);
        m.audio_is_stereo = Some(c.channels == 2);
    }
    m.encoder = Some(concat!("switchyard source ", env!("CARGO_PKG_VERSION")).to_string());
    m
}
