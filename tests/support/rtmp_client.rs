//! A scriptable RTMP client on rml_rtmp, for what ffmpeg will not do: stall on purpose, or
//! publish malformed media.

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct RtmpClient {
    pub socket: TcpStream,
    session: ClientSession,
}

impl RtmpClient {
    /// Connects, handshakes and `connect`s to `app`.
    pub fn connect(addr: SocketAddr, app: &str) -> RtmpClient {
        let mut socket = TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut handshake = Handshake::new(PeerType::Client);
        socket
            .write_all(&handshake.generate_outbound_p0_and_p1().unwrap())
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let leftover = loop {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "server closed during handshake");
            match handshake.process_bytes(&buf[..n]).unwrap() {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).unwrap()
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    socket.write_all(&response_bytes).unwrap();
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut client = RtmpClient { socket, session };
        client.send_results(results);
        let input = client.session.handle_input(&leftover).unwrap();
        client.send_results(input);
        let r = client.session.request_connection(app.to_string()).unwrap();
        client.send_results(vec![r]);
        client.wait_for(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted));
        client
    }

    fn send_results(&mut self, results: Vec<ClientSessionResult>) -> Vec<ClientSessionEvent> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    self.socket.write_all(&p.bytes).unwrap()
                }
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        events
    }

    /// Reads until an event matching `want` arrives; panics if the server closes first.
    pub fn wait_for(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let n = self.socket.read(&mut buf).unwrap();
            assert!(n > 0, "server closed the connection");
            let results = self.session.handle_input(&buf[..n]).unwrap();
            if self.send_results(results).iter().any(&want) {
                return;
            }
        }
        panic!("timed out waiting for an RTMP event");
    }

    pub fn play(&mut self, key: &str) {
        let r = self.session.request_playback(key.to_string()).unwrap();
        self.send_results(vec![r]);
        self.wait_for(|e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted));
    }

    pub fn publish(&mut self, key: &str) {
        let r = self
            .session
            .request_publishing(key.to_string(), PublishRequestType::Live)
            .unwrap();
        self.send_results(vec![r]);
        self.wait_for(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted));
    }

    /// Sends one video message; returns false if the server already closed the connection.
    pub fn send_video(&mut self, body: &[u8], timestamp_ms: u32) -> bool {
        let r = self
            .session
            .publish_video_data(
                Bytes::copy_from_slice(body),
                RtmpTimestamp::new(timestamp_ms),
                false,
            )
            .unwrap();
        match r {
            ClientSessionResult::OutboundResponse(p) => self.socket.write_all(&p.bytes).is_ok(),
            _ => true,
        }
    }

    /// True if the server closes the connection within `timeout` (bytes it sends are drained).
    pub fn closed_by_server(&mut self, timeout: Duration) -> bool {
        super::closed_by_server(&mut self.socket, timeout)
    }

    /// Reads for `duration` without parsing, returning the byte count.
    pub fn received_bytes(&mut self, duration: Duration) -> u64 {
        self.socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + duration;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        while Instant::now() < deadline {
            match self.socket.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        total
    }
}

impl RtmpClient {
    /// Sends the video tags of an FLV file (from [`super::flv_tags`]) at the pace of their
    /// timestamps; false if the server closed the connection.
    pub fn send_video_tags_in_real_time(&mut self, tags: &[(u8, u32, &[u8])]) -> bool {
        let start = Instant::now();
        for (kind, ts, body) in tags {
            if *kind != 9 {
                continue;
            }
            let due = start + Duration::from_millis(u64::from(*ts));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if !self.send_video(body, *ts) {
                return false;
            }
        }
        true
    }
}
