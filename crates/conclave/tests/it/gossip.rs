//! Membership for every agent: 3 voters and 9 clients on loopback gossip, failure detection,
//! graceful leave, restart as the same member, remove-dead, health checks, and a peers file
//! with its reload hook. Every agent is killed by PID when the test ends.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Node, cluster_env, eventually, get_json, start_static};
use crate::support::{Agent, free_addr, http};

/// The gossip timings through the environment (the defaults, spelled out).
const GOSSIP: &[(&str, &str)] = &[
    ("CONCLAVE_GOSSIP__PROBE_INTERVAL_MS", "300"),
    ("CONCLAVE_GOSSIP__SUSPICION_MS", "800"),
];

async fn members(agent: &Agent, query: &str) -> Vec<Value> {
    members_at(agent.http, query).await
}

async fn members_at(http: std::net::SocketAddr, query: &str) -> Vec<Value> {
    get_json(&format!(
        "{}://{http}/v1/members{query}",
        crate::support::scheme()
    ))
    .await
    .and_then(|v| v.as_array().cloned())
    .unwrap_or_default()
}

fn state_of(list: &[Value], id: u64) -> Option<String> {
    list.iter()
        .find(|m| m["id"].as_u64() == Some(id))
        .and_then(|m| m["state"].as_str().map(String::from))
}

async fn node_id_of(agent: &Agent) -> u64 {
    get_json(&agent.url("/v1/status")).await.unwrap()["node_id"]
        .as_u64()
        .unwrap()
}

async fn publish_status(agent: &Agent) -> Value {
    get_json(&agent.url("/v1/publish/status")).await.unwrap()[0].clone()
}

fn write_config(dir: &Path, body: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_agents_one_view_detection_leave_restart_health_and_a_guarded_peers_file() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(GOSSIP);
    let voters: Vec<Node> = start_static(root.path(), 3, &[], &env).await;
    let join = voters
        .iter()
        .map(|v| v.agent.rpc.to_string())
        .collect::<Vec<_>>()
        .join(",");

    // Client 0 publishes healthy peers to a file and runs a hook on change.
    // Client 1 has a check we flap. Client 2 publishes too, but its own check always fails:
    // its file follows the cluster, its hook never runs.
    let flag = root.path().join("c1-flag");
    std::fs::write(&flag, "").unwrap();
    let peers_file = root.path().join("c0/peers.txt");
    let hook_log = root.path().join("c0/hook.log");
    let c2_peers = root.path().join("c2/peers.txt");
    let c2_hook = root.path().join("c2/hook.log");
    let sink = |file: &Path, hook: &Path| {
        format!(
            "[[publish]]\npath = {file:?}\nformat = \"lines\"\ndebounce = \"300ms\"\n[publish.hook]\nexec = [\"/bin/sh\", \"-c\", \"echo $CONCLAVE_PEERS_COUNT >> {}\"]\n",
            hook.display()
        )
    };
    let mut clients: Vec<(std::path::PathBuf, Agent)> = Vec::new();
    for i in 0..9 {
        let dir = root.path().join(format!("c{i}"));
        let mut args = vec![
            "--role".to_string(),
            "client".into(),
            "--join".into(),
            join.clone(),
            "--tag".into(),
            format!("idx=c{i}"),
        ];
        let config = match i {
            0 => Some(sink(&peers_file, &hook_log)),
            1 => Some(format!(
                "[[check]]\nname = \"flag\"\nexec = [\"/bin/test\", \"-f\", {:?}]\ninterval = \"200ms\"\nrise = 2\nfall = 3\n",
                flag.display()
            )),
            2 => Some(format!(
                "{}[[check]]\nname = \"never\"\nexec = [\"/bin/false\"]\ninterval = \"200ms\"\n",
                sink(&c2_peers, &c2_hook)
            )),
            _ => None,
        };
        if let Some(body) = config {
            args.push("--config".into());
            args.push(write_config(&dir, &body));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = Agent::spawn_env(&dir, free_addr(), free_addr(), &args, &env);
        clients.push((dir, agent));
    }
    let all: Vec<std::net::SocketAddr> = voters
        .iter()
        .map(|v| v.agent.http)
        .chain(clients.iter().map(|(_, a)| a.http))
        .collect();
    let everyone = || all.clone();

    // One view: every agent lists 12 members, all alive.
    eventually(
        "12 agents agree on 12 alive members",
        Duration::from_secs(30),
        || async {
            for a in everyone() {
                let list = members_at(a, "").await;
                if list.len() != 12 || list.iter().any(|m| m["state"] != "alive") {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let voters_seen = members(&clients[5].1, "?role=voter").await;
    assert_eq!(voters_seen.len(), 3);
    // The leader advertises its Raft role once elected, which may come after the view.
    eventually(
        "a client sees which voter leads",
        Duration::from_secs(10),
        || async {
            members(&clients[5].1, "?role=voter")
                .await
                .iter()
                .any(|m| m["raft_role"] == "leader")
        },
    )
    .await;
    let tagged = members(&voters[0].agent, "?tag=idx=c4").await;
    assert_eq!(tagged.len(), 1);
    // The CLI on a client: its own status, then the cluster table (forwarded).
    let addr = clients[6].1.addr_flag();
    let (code, out, err) = crate::support::cli(&["status", "--addr", addr.as_str()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(client: no Raft log"), "{out}");
    assert!(
        out.contains("voter"),
        "the cluster table lists the voters: {out}"
    );
    let (code, out, err) = crate::support::cli(
        &["members", "--addr", addr.as_str(), "--role", "client"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 10, "a header and 9 clients: {out}");
    // A client forwards KV to the cluster.
    let r = http()
        .put(clients[3].1.url("/v1/kv/from-client"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let r = http()
        .get(voters[1].agent.url("/v1/kv/from-client"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hi");

    // The peers file settles at the 11 healthy agents (client 2 fails its check) and the
    // hook ran on client 0; client 2's hook never runs (its own check fails).
    eventually("peers file lists 11", Duration::from_secs(20), || async {
        lines(&peers_file) == 11 && lines(&c2_peers) == 11
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes0 = publish_status(&clients[0].1).await["writes"]
        .as_u64()
        .unwrap();
    let hooks0 = lines(&hook_log);
    assert!(hooks0 >= 1);
    assert_eq!(
        lines(&c2_hook),
        0,
        "an unhealthy node must not run its hook"
    );

    // From here on, a reader watches the file: never empty, never partial.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, path) = (stop.clone(), reads.clone(), peers_file.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).expect("peers file exists");
                assert!(!text.is_empty(), "observed an empty peers file");
                assert!(
                    text.ends_with('\n'),
                    "observed a partial peers file: {text:?}"
                );
                for line in text.lines() {
                    assert!(
                        line.parse::<std::net::SocketAddr>().is_ok(),
                        "bad line {line:?}"
                    );
                }
                reads.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    // A flap inside the thresholds (fall = 3 at 200 ms) publishes nothing.
    for _ in 0..3 {
        std::fs::remove_file(&flag).unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        std::fs::write(&flag, "").unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        publish_status(&clients[0].1).await["writes"]
            .as_u64()
            .unwrap(),
        writes0,
        "a flapping check must not change the publication"
    );

    // kill -9 client 4: suspect, then dead, on every node; the file drops it once.
    let id4 = node_id_of(&clients[4].1).await;
    let (gone4, gone5) = (clients[4].1.http, clients[5].1.http);
    clients[4].1.kill9();
    eventually(
        "client 4 dead everywhere",
        Duration::from_secs(15),
        || async {
            for a in everyone().into_iter().filter(|a| *a != gone4) {
                if state_of(&members_at(a, "").await, id4).as_deref() != Some("dead") {
                    return false;
                }
            }
            true
        },
    )
    .await;
    eventually("file drops client 4", Duration::from_secs(10), || async {
        lines(&peers_file) == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = publish_status(&clients[0].1).await;
    assert_eq!(st["writes"].as_u64().unwrap(), writes0 + 1, "{st}");
    assert_eq!(lines(&hook_log), hooks0 + 1);

    // SIGTERM client 5: it leaves; every node shows it as left.
    let id5 = node_id_of(&clients[5].1).await;
    let pid5 = clients[5].1.pid().unwrap();
    crate::cluster::signal(pid5, "TERM").await;
    assert!(clients[5].1.wait_exit(Duration::from_secs(10)).is_some());
    eventually(
        "client 5 left everywhere",
        Duration::from_secs(10),
        || async {
            for a in everyone()
                .into_iter()
                .filter(|a| *a != gone4 && *a != gone5)
            {
                if state_of(&members_at(a, "").await, id5).as_deref() != Some("left") {
                    return false;
                }
            }
            true
        },
    )
    .await;

    // Client 1's check fails for real: it drops out of the healthy-only file.
    std::fs::remove_file(&flag).unwrap();
    eventually(
        "file drops client 1 and 5",
        Duration::from_secs(10),
        || async { lines(&peers_file) == 8 },
    )
    .await;
    let unhealthy = members(&voters[0].agent, "?healthy=false").await;
    let id1 = node_id_of(&clients[1].1).await;
    let c1 = members(&voters[0].agent, "")
        .await
        .into_iter()
        .find(|m| m["id"].as_u64() == Some(id1))
        .unwrap();
    assert_eq!(c1["healthy"], false);
    assert_eq!(c1["failing_checks"], serde_json::json!(["flag"]));
    assert!(!unhealthy.is_empty());

    // Client 5 restarts on its data dir: the same member comes back, once.
    let (dir5, old5) = (&clients[5].0, &clients[5].1);
    let args = ["--role", "client", "--join", join.as_str()];
    let _back = Agent::spawn_env(dir5, old5.http, old5.rpc, &args, &env);
    eventually(
        "client 5 alive again, once",
        Duration::from_secs(15),
        || async {
            let list = members(&voters[0].agent, "").await;
            list.iter()
                .filter(|m| m["id"].as_u64() == Some(id5))
                .count()
                == 1
                && state_of(&list, id5).as_deref() == Some("alive")
        },
    )
    .await;

    // remove-dead forgets client 4 everywhere.
    let r: Value = http()
        .post(voters[0].agent.url("/v1/members/remove-dead"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["removed"], serde_json::json!([id4]));
    eventually(
        "client 4 forgotten everywhere",
        Duration::from_secs(10),
        || async {
            for a in everyone().into_iter().filter(|a| *a != gone4) {
                if state_of(&members_at(a, "").await, id4).is_some() {
                    return false;
                }
            }
            true
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .expect("the reader saw only whole, non-empty files");
    assert!(reads.load(Ordering::Relaxed) > 100);
}

/// Wait until `client`'s `/v1/ready` is `503 not_joined` and names `what` as the reason.
async fn wait_not_joined_mentioning(client: &Agent, what: &str) {
    eventually(
        "the client explains it is not joined",
        Duration::from_secs(10),
        || async {
            match http().get(client.url("/v1/ready")).send().await {
                Ok(r) if r.status() == 503 => {
                    let body = r.text().await.unwrap_or_default();
                    body.contains("not_joined") && body.contains(what)
                }
                _ => false,
            }
        },
    )
    .await;
}

/// Removes its line from /etc/hosts when dropped.
struct HostsEntry {
    line: String,
}

impl HostsEntry {
    fn add(line: String) -> std::io::Result<HostsEntry> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")?;
        writeln!(f, "{line}")?;
        Ok(HostsEntry { line })
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string("/etc/hosts") {
            let kept: String = text
                .lines()
                .filter(|l| *l != self.line)
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write("/etc/hosts", kept);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_join_waits_for_a_dns_name_that_resolves_later() {
    let writable = std::fs::OpenOptions::new()
        .append(true)
        .open("/etc/hosts")
        .is_ok();
    if !writable {
        eprintln!("SKIPPED: needs a writable /etc/hosts (run as root, as .ci/run does)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(GOSSIP);
    let voter = start_static(root.path(), 1, &[], &env).await;
    let name = format!("conclave-it-seed-{}.test", std::process::id());
    let seed = format!("{name}:{}", voter[0].agent.rpc.port());
    let client = Agent::spawn_env(
        &root.path().join("client"),
        free_addr(),
        free_addr(),
        &["--role", "client", "--retry-join", seed.as_str()],
        &env,
    );
    // Not resolvable yet: not ready, and it says why.
    wait_not_joined_mentioning(&client, &name).await;
    let _entry = HostsEntry::add(format!("127.0.0.1 {name}")).unwrap();
    client.wait_healthy(Duration::from_secs(20)).await;
    let list = members(&client, "").await;
    assert_eq!(list.len(), 2, "{list:?}");
}

/// A DNS server for one test: once `ready`, SRV queries get one record (priority 0, weight 0,
/// `port`, target `seed.it.test.`) and A queries 127.0.0.1; before that, NXDOMAIN. Stops
/// when `stop` is set.
fn spawn_dns(port: u16, ready: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> std::net::SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            // The question: labels from byte 12 to a zero byte, then type and class.
            let mut end = 12;
            while end < n && q[end] != 0 {
                end += 1 + q[end] as usize;
            }
            let qtype = u16::from_be_bytes([q[end + 1], q[end + 2]]);
            let question = &q[12..end + 5];
            let mut answers: Vec<Vec<u8>> = Vec::new();
            if ready.load(Ordering::Relaxed) {
                let mut rr = vec![0xc0, 0x0c];
                rr.extend_from_slice(&qtype.to_be_bytes());
                rr.extend_from_slice(&[0, 1, 0, 0, 0, 1]); // class IN, TTL 1 s
                let rdata: Vec<u8> = match qtype {
                    33 => {
                        let mut d = vec![0, 0, 0, 0];
                        d.extend_from_slice(&port.to_be_bytes());
                        for label in ["seed", "it", "test"] {
                            d.push(label.len() as u8);
                            d.extend_from_slice(label.as_bytes());
                        }
                        d.push(0);
                        d
                    }
                    1 => vec![127, 0, 0, 1],
                    _ => Vec::new(),
                };
                if !rdata.is_empty() {
                    rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                    rr.extend_from_slice(&rdata);
                    answers.push(rr);
                }
            }
            let rcode = if ready.load(Ordering::Relaxed) { 0 } else { 3 };
            let mut resp = vec![
                q[0],
                q[1],
                0x81,
                0x80 | rcode,
                0,
                1,
                0,
                answers.len() as u8,
                0,
                0,
                0,
                0,
            ];
            resp.extend_from_slice(question);
            for a in answers {
                resp.extend_from_slice(&a);
            }
            let _ = sock.send_to(&resp, from);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_join_finds_members_once_the_record_appears() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(GOSSIP);
    let first = start_static(root.path(), 1, &[], &env).await;
    let (ready, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let dns = spawn_dns(first[0].agent.rpc.port(), ready.clone(), stop.clone()).to_string();
    let srv = "srv:_conclave._udp.it.test";
    let client = Agent::spawn_env(
        &root.path().join("client"),
        free_addr(),
        free_addr(),
        &[
            "--role",
            "client",
            "--join",
            srv,
            "--dns-server",
            dns.as_str(),
        ],
        &env,
    );
    let voter = Agent::spawn_env(
        &root.path().join("voter2"),
        free_addr(),
        free_addr(),
        &["--join", srv, "--dns-server", dns.as_str()],
        &env,
    );
    wait_not_joined_mentioning(&client, srv).await;
    ready.store(true, Ordering::Relaxed);
    client.wait_healthy(Duration::from_secs(30)).await;
    voter.wait_healthy(Duration::from_secs(40)).await;
    let members = get_json(&first[0].agent.url("/v1/cluster/members"))
        .await
        .unwrap();
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");
    stop.store(true, Ordering::Relaxed);
}
