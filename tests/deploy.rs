//! The deployment files agree with the binary: the Kubernetes manifest's configuration file and
//! environment variables are ones `switchyard` accepts. (The manifests' own schema is checked by
//! `kubernetes-validate` in `scripts/test`; no container runtime runs here.)

use std::process::Command;

const MANIFEST: &str = include_str!("../deploy/kubernetes/switchyard.yaml");

/// The `switchyard.toml: |` block of the ConfigMap, unindented.
fn config_file() -> String {
    let mut lines = MANIFEST
        .lines()
        .skip_while(|l| !l.contains("switchyard.toml: |"));
    lines.next().expect("the ConfigMap holds switchyard.toml");
    lines
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| l.get(4..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `SWITCHYARD_*` variables the StatefulSet sets, with `$(VAR)` references filled in as
/// Kubernetes does for a pod named `switchyard-0` in namespace `media`.
fn environment() -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut name = None;
    for line in MANIFEST.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("- name: ") {
            name = Some(n.to_string());
        } else if let (Some(n), Some(v)) = (&name, line.strip_prefix("value: ")) {
            if n.starts_with("SWITCHYARD_") {
                let v = v
                    .trim_matches('"')
                    .replace("$(POD_NAME)", "switchyard-0")
                    .replace("$(POD_NAMESPACE)", "media");
                vars.push((n.clone(), v));
            }
            name = None;
        }
    }
    vars
}

#[test]
fn the_kubernetes_manifest_configures_a_cluster_node_the_binary_accepts() {
    let dir = std::env::temp_dir().join(format!("switchyard-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config_file()).unwrap();
    let env = environment();
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "SWITCHYARD_NODE_ID",
            "SWITCHYARD_ADVERTISE_URL",
            "SWITCHYARD_CLUSTER_DIRECTORY"
        ]
    );
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("config")
        .arg("--config")
        .arg(&path)
        .envs(env)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("node_id = \"switchyard-0\""), "{text}");
    assert!(
        text.contains("directory = \"redis://switchyard-redis:6379/0\""),
        "{text}"
    );
    assert!(
        text.contains(
            "advertise_url = \"http://switchyard-0.switchyard-nodes.media.svc.cluster.local:8080\""
        ),
        "{text}"
    );
    assert!(text.contains("max_viewers = 500"), "{text}");
}
