//! The OpenAPI description at `GET /api/v1/openapi.json`, generated from the handlers'
//! annotations (utoipa): it lists every route the router serves and nothing it does not, it is
//! valid OpenAPI 3.1 by an independent validator (openapi-spec-validator), and schemathesis,
//! generating requests from it against a server with a live stream, gets no server error.
//! `scripts/test` installs both Python tools in target/test-peers/schemathesis.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// A program of the schemathesis virtualenv that `scripts/test` installs.
fn tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-peers/schemathesis/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is not installed; run scripts/test, which installs the test peers",
        path.display()
    );
    path
}

fn description(server: &Switchyard) -> Value {
    let (status, api) = server.get_json("/api/v1/openapi.json");
    assert_eq!(status, 200, "{api}");
    api
}

/// `(METHOD, path template)` of every operation described.
fn operations(api: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in api["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// A concrete URL path for a template: a stream that does not exist, an unknown id.
fn concrete(template: &str) -> String {
    template
        .replace("{name}", "live/absent")
        .replace("{file}", "index.m3u8")
        .replace("{session}", "no-such-session")
        .replace("{id}", "no-such-id")
}

/// The status and the `error` text of a request, reading the body only when it is JSON (the
/// event stream never ends).
fn probe(server: &Switchyard, method: &str, path: &str) -> (u16, String) {
    let result = ureq::request(method, &server.api(path))
        .timeout(Duration::from_secs(15))
        .call();
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    if response.content_type() != "application/json" {
        return (status, String::new());
    }
    let body: Value = response.into_json().unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[test]
fn every_described_operation_reaches_its_handler() {
    let server = Switchyard::start();
    let api = description(&server);
    assert_eq!(api["openapi"], "3.1.0");
    let ops = operations(&api);
    // The surface as the README lists it: the description is not a small subset.
    for (method, path) in [
        ("GET", "/api/v1/streams"),
        ("DELETE", "/api/v1/streams/{name}"),
        ("POST", "/api/v1/pulls"),
        ("GET", "/api/v1/pushes/{id}"),
        ("POST", "/api/v1/loadtests"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/webrtc/sessions"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/rest-api/pull/startup"),
        ("POST", "/rest-api/push/terminate"),
        ("POST", "/whip/{name}"),
        ("PATCH", "/whep/{name}/{session}"),
        ("DELETE", "/whip/{name}/{session}"),
        ("GET", "/hls/{name}/{file}"),
        ("GET", "/mse/{name}"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    ] {
        assert!(
            ops.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not described; described: {ops:?}"
        );
    }
    // Types of the same name in different modules keep their own schemas.
    let body_of = |path: &str| {
        let reference = api["paths"][path]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        api["components"]["schemas"][reference]["properties"].clone()
    };
    assert!(body_of("/rest-api/pull/startup")["remoteStreamName"].is_object());
    assert!(body_of("/rest-api/push/startup")["rtmpUrl"].is_object());
    assert!(body_of("/rest-api/pull/terminate")["localMediaSessionId"].is_object());
    assert!(body_of("/rest-api/push/terminate")["mediaSessionId"].is_object());
    // Every operation described is served: its handler answers, not the router's fallbacks.
    for (method, template) in &ops {
        let path = concrete(template);
        let (status, error) = probe(&server, method, &path);
        let fallback = (status == 404 && error.starts_with("no such resource"))
            || (status == 405 && error == "method not allowed on this resource");
        assert!(
            !fallback,
            "{method} {template} is described but not routed ({method} {path}: {status} {error:?})"
        );
    }
}

/// The other direction: the router has no route that bypasses the description. Routes are
/// only registered through utoipa-axum's `routes!` (which adds the handler and its
/// description together), and through `routes_at`, which does the same for catch-all paths.
#[test]
fn no_route_is_registered_without_its_description() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut bypasses = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            // utoipa-axum's router is the documented one.
            let line = line.replace("OpenApiRouter::new()", "OpenApiRouter");
            let registers = [
                ".route(",
                ".route_service(",
                ".nest_service(",
                "Router::new()",
                "routing::get(",
                "routing::post(",
            ]
            .iter()
            .any(|call| line.contains(call));
            // The one plain `.route` is `routes_at`'s, whose routes come from `routes!`.
            if registers && !line.contains(".route(at, method_router)") {
                bypasses.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        bypasses.is_empty(),
        "routes registered without a description (use `routes!` with `#[utoipa::path]`):\n{}",
        bypasses.join("\n")
    );
}

#[test]
fn description_is_valid_openapi_3_1() {
    let validator = tool("openapi-spec-validator");
    let server = Switchyard::start();
    let api = description(&server);
    let dir = TempDir::new("openapi");
    let file = dir.path.join("openapi.json");
    std::fs::write(&file, api.to_string()).unwrap();
    let out = Command::new(validator).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator refuses the description:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // operationIds are unique (client generators name functions after them).
    let mut ids: Vec<&str> = Vec::new();
    for item in api["paths"].as_object().unwrap().values() {
        for method in METHODS {
            if let Some(id) = item[method]["operationId"].as_str() {
                assert!(!ids.contains(&id), "operationId {id} twice");
                ids.push(id);
            }
        }
    }
}

/// schemathesis (property-based: the description's examples, its coverage phase of boundary and
/// invalid values, then random requests) against a server with a stream published by ffmpeg:
/// no answer is a 5xx the description does not declare. The hooks keep every URL the server
/// would connect to on loopback and load tests tiny; `/api/v1/events` is left out because its
/// answer never ends.
#[test]
fn schemathesis_finds_no_server_error() {
    let st = tool("st");
    // A reader of a stream that a pull brings waits for the pull up to its connect timeout;
    // the pulls made here never connect (loopback, port 9), so 1 s instead of 10 keeps the
    // run short.
    let server = Switchyard::start_with_config("[pull]\nconnect_timeout_secs = 1\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/cam1"), Encoding::Baseline, 25, 600);
    server.wait_for_stream("live/cam1", true);
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    let base = server.api("");
    let work = TempDir::new("schemathesis");
    let out = Command::new(st)
        .args(["run", &server.api("/api/v1/openapi.json"), "--url", &base])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: with two, schemathesis 4.32.5 once failed inside itself (Python's `ast`
        // used from two threads in its coverage phase).
        .args(["--max-examples", "100", "--seed", "14", "--workers", "1"])
        .args(["--request-timeout", "20", "--no-color"])
        .args(["--exclude-path", "/api/v1/events"])
        .args(["--generation-database", "none"])
        .current_dir(&work.path)
        .env("PYTHONPATH", &hooks)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis:\n{report}");
    assert!(
        !server.log_text().contains("panicked"),
        "the server panicked:\n{}",
        server.log_text()
    );
}
