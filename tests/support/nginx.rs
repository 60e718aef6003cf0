//! nginx with the RTMP module, as a CDN to push to (Debian's nginx + libnginx-mod-rtmp).

use super::{require, Proc, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    dir: TempDir,
    pub rtmp_port: u16,
    /// The HTTP port serving HLS (with [`Nginx::start_hls`]).
    pub http_port: Option<u16>,
    proc: Option<Proc>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Starts nginx with `application live { live on; }` on a free loopback port.
    pub fn start() -> Nginx {
        Self::start_with("")
    }

    /// Like [`Nginx::start`], with more `directives` in `application live` (e.g. `wait_key
    /// off;`).
    pub fn start_with(directives: &str) -> Nginx {
        Self::start_conf(directives, false)
    }

    /// Like [`Nginx::start`], also writing MPEG-TS HLS (2 s fragments, a 10 s playlist) and
    /// serving it over HTTP at `/hls/{key}.m3u8` ([`Nginx::hls_url`]).
    pub fn start_hls() -> Nginx {
        Self::start_conf("", true)
    }

    fn start_conf(directives: &str, hls: bool) -> Nginx {
        require("nginx");
        let dir = TempDir::new("nginx");
        let rtmp_port = free_port();
        let http_port = hls.then(free_port);
        let (hls_directives, http) = match http_port {
            Some(port) => (
                format!(
                    "hls on; hls_path {dir}/hls; hls_fragment 2s; hls_playlist_length 10s;",
                    dir = dir.path.display()
                ),
                format!(
                    "http {{ access_log off; server {{ listen 127.0.0.1:{port}; \
                     location /hls {{ root {dir}; add_header Cache-Control no-cache; \
                     types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }} }} }} }}\n",
                    dir = dir.path.display()
                ),
            ),
            None => (String::new(), String::new()),
        };
        let conf = format!(
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{}}\n\
             rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; application live {{ live on; {hls_directives} {directives} }} }} }}\n{http}",
            dir = dir.path.display()
        );
        std::fs::write(dir.path.join("nginx.conf"), conf).unwrap();
        let mut nginx = Nginx {
            dir,
            rtmp_port,
            http_port,
            proc: None,
        };
        nginx.restart();
        nginx
    }

    /// (Re)starts the nginx process on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&self.dir.path)
            .arg("-c")
            .arg(self.dir.path.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.rtmp_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {}",
                self.rtmp_port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        self.proc = None;
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp_port)
    }

    /// The HLS playlist of `key` (with [`Nginx::start_hls`]).
    pub fn hls_url(&self, key: &str) -> String {
        let port = self.http_port.expect("nginx started with start_hls");
        format!("http://127.0.0.1:{port}/hls/{key}.m3u8")
    }
}
