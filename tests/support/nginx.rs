//! nginx with the RTMP module, as a CDN to push to (Debian's nginx + libnginx-mod-rtmp).

use super::{require, Proc, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    dir: TempDir,
    pub rtmp_port: u16,
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
        require("nginx");
        let dir = TempDir::new("nginx");
        let rtmp_port = free_port();
        let conf = format!(
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{}}\n\
             rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; application live {{ live on; {directives} }} }} }}\n",
            dir = dir.path.display()
        );
        std::fs::write(dir.path.join("nginx.conf"), conf).unwrap();
        let mut nginx = Nginx {
            dir,
            rtmp_port,
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
}
