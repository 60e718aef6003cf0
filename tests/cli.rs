//! The command line: defaults without a config file, precedence of flag > env > file.

use std::process::Command;

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn config_prints_every_key_with_defaults() {
    let out = switchyard()
        .arg("config")
        .env_remove("SWITCHYARD_HTTP")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "[http]",
        "listen = \"0.0.0.0:8080\"",
        "[rtmp]",
        "listen = \"0.0.0.0:1935\"",
        "chunk_size = 4096",
        "[webrtc]",
        "udp = \"0.0.0.0:8189\"",
        "[bus]",
        "reader_queue_frames",
        "[hls]",
        "[mse]",
        "[pull]",
        "# [[pulls]]",
        "# [[pushes]]",
    ] {
        assert!(text.contains(key), "missing {key} in:\n{text}");
    }
}

#[test]
fn flags_override_environment_which_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "[http]\nlisten = \"127.0.0.1:1111\"\n[rtmp]\nlisten = \"127.0.0.1:2222\"\n",
    )
    .unwrap();
    let out = switchyard()
        .args(["config", "--config"])
        .arg(&file)
        .args(["--rtmp", "127.0.0.1:3333", "--webrtc-udp", "9999"])
        .env("SWITCHYARD_HTTP", "127.0.0.1:4444")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("127.0.0.1:4444")
            && text.contains("127.0.0.1:3333")
            && text.contains("0.0.0.0:9999"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "[rtmp]\nlisten_port = 5\n").unwrap();
    let out = switchyard()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("listen_port"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
