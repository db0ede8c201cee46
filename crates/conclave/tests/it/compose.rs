//! The Compose cluster of `deploy/compose/` on the real Docker engine: three voters form
//! through their service names over mutual TLS with ACLs and a cluster token; a write through
//! one container is read through another; `docker kill` of the leader's container → writes
//! resume, and the restarted container rejoins with its data; `docker network disconnect` of
//! a voter → the majority serves on; the client containers' peers file follows the voters.
//! Everything is removed by project name (containers, network, volumes) and the image by tag.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const SERVICES: [&str; 5] = ["voter-1", "voter-2", "voter-3", "client-1", "client-2"];

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run a docker command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

fn docker(args: &[&str]) -> (bool, String) {
    run(Command::new("docker").args(args))
}

struct Project {
    name: String,
    image: String,
    secrets: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Project {
    fn compose(&self, args: &[&str]) -> (bool, String) {
        run(Command::new("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.dir.join("docker-compose.yml"))
            .args(args)
            .env("CONCLAVE_IMAGE", &self.image)
            .env("CONCLAVE_SECRETS", &self.secrets)
            .env("CONCLAVE_HTTP_PORT", self.port.to_string()))
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.name)
    }

    /// The CLI inside `service`'s container, over mutual TLS with the management token.
    fn cli(&self, service: &str, args: &[&str]) -> (bool, String) {
        let token = std::fs::read_to_string(self.secrets.join("agents/management-token")).unwrap();
        let c = self.container(service);
        let mut full = vec!["exec", c.as_str(), "/usr/local/bin/conclave"];
        full.extend_from_slice(args);
        full.extend_from_slice(&[
            "--addr",
            "https://127.0.0.1:7400",
            "--ca-file",
            "/secrets/ca.pem",
            "--cert-file",
            "/secrets/cli.pem",
            "--key-file",
            "/secrets/cli-key.pem",
            "--token",
            token.trim(),
        ]);
        docker(&full)
    }

    fn status(&self, service: &str) -> Option<Value> {
        let (ok, out) = self.cli(service, &["status", "-o", "json"]);
        ok.then(|| serde_json::from_str(&out).ok()).flatten()
    }

    /// The voters' peers file as `service` wrote it.
    fn peers(&self, service: &str) -> Vec<String> {
        let dest = self.secrets.join(format!("{service}-peers.json"));
        let _ = std::fs::remove_file(&dest);
        let from = format!("{}:/data/peers.json", self.container(service));
        if !docker(&["cp", &from, &dest.display().to_string()]).0 {
            return Vec::new();
        }
        let list: Vec<Value> = std::fs::read_to_string(&dest)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut names: Vec<String> = list
            .iter()
            .filter_map(|p| p["peerString"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    fn logs(&self) -> String {
        self.compose(&["logs", "--no-color", "--tail", "40"]).1
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
        docker(&["rmi", "-f", &self.image]);
    }
}

fn wait_until(what: &str, timeout: Duration, project: &Project, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{}",
            project.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn voters_ok(status: &Value) -> usize {
    status["members"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "voter").count())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs the Docker engine, docker-compose and a release build (run by .ci/run)"]
fn the_compose_cluster_forms_survives_a_killed_leader_and_a_cut_voter() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let work = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let project = Project {
        name: format!("conclaveit{pid}"),
        image: format!("conclave-compose-it:{pid}"),
        secrets: work.path().join("secrets"),
        dir: root.join("deploy/compose"),
        port: crate::support::free_addr().port(),
    };
    let (ok, said) = run(Command::new("bash")
        .arg(root.join("deploy/build-image.sh"))
        .arg(&project.image));
    assert!(ok, "{said}");
    let bin = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("release/conclave");
    let (ok, said) = run(Command::new("bash")
        .arg(project.dir.join("generate.sh"))
        .arg(&project.secrets)
        .env("CONCLAVE_BIN", &bin));
    assert!(ok, "{said}");
    let (ok, said) = project.compose(&["up", "-d"]);
    assert!(ok, "{said}");

    // Every container turns healthy through the image's own binary.
    wait_until(
        "all five healthy",
        Duration::from_secs(120),
        &project,
        || {
            SERVICES.iter().all(|s| {
                docker(&[
                    "inspect",
                    "-f",
                    "{{.State.Health.Status}}",
                    &project.container(s),
                ])
                .1 == "healthy"
            })
        },
    );
    wait_until(
        "three voters and a leader",
        Duration::from_secs(60),
        &project,
        || {
            project
                .status("voter-1")
                .is_some_and(|s| voters_ok(&s) == 3 && s["leader_id"].is_u64())
        },
    );

    // A write through one container is read through another.
    let (ok, out) = project.cli("voter-1", &["kv", "put", "app/greeting", "hello"]);
    assert!(ok, "{out}");
    let (ok, out) = project.cli("voter-3", &["kv", "get", "app/greeting"]);
    assert!(ok && out.contains("hello"), "{out}");
    let (ok, out) = project.cli("client-2", &["kv", "get", "app/greeting"]);
    assert!(ok && out.contains("hello"), "through a client agent: {out}");

    // The peers file of each client lists the three voters.
    let all = vec![
        "voter-1:7400".to_string(),
        "voter-2:7400".into(),
        "voter-3:7400".into(),
    ];
    wait_until(
        "peers files list 3 voters",
        Duration::from_secs(60),
        &project,
        || project.peers("client-1") == all && project.peers("client-2") == all,
    );

    // Kill the leader's container: the others elect a leader and take writes.
    let status = project.status("voter-1").unwrap();
    let leader_id = status["leader_id"].as_u64().unwrap();
    let leader_api = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node_id"] == leader_id)
        .and_then(|m| m["api_addr"].as_str())
        .unwrap()
        .to_owned();
    let leader = leader_api.trim_end_matches(":7400").to_owned();
    assert!(SERVICES.contains(&leader.as_str()), "{leader_api}");
    let survivor = ["voter-1", "voter-2", "voter-3"]
        .into_iter()
        .find(|s| *s != leader)
        .unwrap();
    let (ok, out) = docker(&["kill", &project.container(&leader)]);
    assert!(ok, "{out}");
    let started = Instant::now();
    wait_until(
        "a write after the kill",
        Duration::from_secs(30),
        &project,
        || {
            project
                .cli(survivor, &["kv", "put", "app/after-kill", "yes"])
                .0
        },
    );
    println!(
        "writes resumed {:?} after docker kill of {leader}",
        started.elapsed()
    );
    wait_until(
        "the peers files drop the killed voter",
        Duration::from_secs(60),
        &project,
        || project.peers("client-1").len() == 2,
    );

    // The restarted container is the same node, with its data, and catches up.
    let (ok, out) = docker(&["start", &project.container(&leader)]);
    assert!(ok, "{out}");
    wait_until(
        "the restarted voter rejoins",
        Duration::from_secs(60),
        &project,
        || {
            project.status(&leader).is_some_and(|s| {
                s["node_id"] == leader_id && voters_ok(&s) == 3 && s["leader_id"].is_u64()
            })
        },
    );
    let (ok, out) = project.cli(&leader, &["kv", "get", "app/after-kill"]);
    assert!(ok && out.contains("yes"), "{out}");
    wait_until(
        "the peers files list 3 again",
        Duration::from_secs(60),
        &project,
        || project.peers("client-1") == all && project.peers("client-2") == all,
    );

    // Cut one voter off the network: the other two keep serving.
    let network = format!("{}_conclave", project.name);
    let cut = project.container("voter-3");
    let (ok, out) = docker(&["network", "disconnect", &network, &cut]);
    assert!(ok, "{out}");
    wait_until(
        "writes with a voter cut off",
        Duration::from_secs(30),
        &project,
        || {
            project
                .cli("voter-1", &["kv", "put", "app/cut", "served"])
                .0
        },
    );
    let (ok, out) = project.cli("voter-2", &["kv", "get", "app/cut"]);
    assert!(ok && out.contains("served"), "{out}");
    let (ok, out) = docker(&["network", "connect", &network, &cut]);
    assert!(ok, "{out}");
    wait_until(
        "the cut voter catches up",
        Duration::from_secs(60),
        &project,
        || {
            project
                .cli("voter-3", &["kv", "get", "app/cut"])
                .1
                .contains("served")
        },
    );
    // The reload hook ran in the client containers after their writes.
    let (ok, out) = project.cli("client-1", &["publish", "-o", "json"]);
    assert!(ok, "{out}");
    let sinks: Value = serde_json::from_str(&out).unwrap();
    assert!(
        sinks[0]["last_hook"]["ok"] == true && sinks[0]["writes"].as_u64() >= Some(2),
        "{sinks}"
    );
}
