//! The container image on the real Docker engine: built by `deploy/build-image.sh` from
//! nothing (`FROM scratch`, no pull), within its size budget, running as a non-root user,
//! healthy by its own `HEALTHCHECK`, serving through `docker exec`, and keeping its data on
//! the volume across a restart. Everything it starts is removed by name.

use std::process::Command;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

/// Removes the container, its volume and the image, whatever the test did.
struct Cleanup {
    container: String,
    volume: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.container]);
        docker(&["volume", "rm", "-f", &self.volume]);
        docker(&["rmi", "-f", &self.image]);
    }
}

fn wait_healthy(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, status) = docker(&["inspect", "-f", "{{.State.Health.Status}}", container]);
        if status == "healthy" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy ({status}): {}",
            docker(&["logs", container]).1
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs the Docker engine and a release build (run by .ci/run)"]
fn the_image_builds_from_scratch_runs_as_a_user_and_keeps_its_data() {
    let tag = format!("conclave-it:{}", std::process::id());
    let cleanup = Cleanup {
        container: format!("conclave-it-{}", std::process::id()),
        volume: format!("conclave-it-{}-data", std::process::id()),
        image: tag.clone(),
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let built = Command::new("bash")
        .arg(format!("{root}/deploy/build-image.sh"))
        .arg(&tag)
        .output()
        .expect("run deploy/build-image.sh");
    let said = String::from_utf8_lossy(&built.stdout).into_owned();
    assert!(
        built.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    println!("{said}");
    let (_, history) = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
    assert!(!history.contains("FROM "), "no base image: {history}");
    let (_, user) = docker(&["inspect", "-f", "{{.Config.User}}", &tag]);
    assert_eq!(user, "10001:10001");

    let c = cleanup.container.as_str();
    let volume = format!("{}:/data", cleanup.volume);
    let (ok, out) = docker(&["run", "-d", "--name", c, "-v", &volume, &tag]);
    assert!(ok, "{out}");
    wait_healthy(c);
    let (ok, out) = docker(&["exec", c, "conclave", "kv", "put", "greeting", "hello"]);
    assert!(ok, "{out}");
    let (_, status) = docker(&["exec", c, "conclave", "status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let node = status["node_id"].clone();
    assert!(node.is_u64(), "{status}");

    // A restart keeps the node and its data (the volume), and it is healthy again.
    let (ok, out) = docker(&["restart", "-t", "10", c]);
    assert!(ok, "{out}");
    wait_healthy(c);
    let (ok, value) = docker(&["exec", c, "conclave", "kv", "get", "greeting"]);
    assert!(ok && value == "hello", "{value}");
    let (_, status) = docker(&["exec", c, "conclave", "status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["node_id"], node, "the same node after a restart");
    drop(cleanup);
}
