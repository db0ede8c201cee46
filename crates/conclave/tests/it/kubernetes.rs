//! `deploy/kubernetes/`: every manifest parses into the Kubernetes API's own types with no
//! field lost (a typo fails here, not in a cluster), the pieces agree with each other, and
//! the StatefulSet's agents — with the manifest's own config file, arguments and probes —
//! form a cluster from zero pods through a DNS server that answers as the cluster DNS does.
//! No API server or cluster DNS can run here: the DNS server is this test's, speaking the
//! real protocol to the agents' real resolver.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::Value;

use crate::support::free_addr;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every document of every `*.yaml` but the kustomization, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
        out.extend(docs.into_iter().map(|d| (name.clone(), d)));
    }
    out
}

/// Paths present in `original` but missing from `back` (what the typed parse dropped:
/// unknown or misspelt fields).
fn lost_fields(original: &Value, back: &Value, at: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{at}[]"));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Result<Value, String> {
    let parsed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    lost_fields(doc, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(back)
    } else {
        Err(format!("fields the API does not have: {lost:?}"))
    }
}

fn check(doc: &Value) -> Result<Value, String> {
    match doc["kind"].as_str().unwrap_or_default() {
        "Namespace" => typed::<Namespace>(doc),
        "ServiceAccount" => typed::<ServiceAccount>(doc),
        "Role" => typed::<Role>(doc),
        "RoleBinding" => typed::<RoleBinding>(doc),
        "ConfigMap" => typed::<ConfigMap>(doc),
        "Service" => typed::<Service>(doc),
        "StatefulSet" => typed::<StatefulSet>(doc),
        "DaemonSet" => typed::<DaemonSet>(doc),
        "PodDisruptionBudget" => typed::<PodDisruptionBudget>(doc),
        other => Err(format!("kind {other:?} is not one this test knows")),
    }
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn every_manifest_parses_into_the_kubernetes_types_and_the_pieces_agree() {
    let docs = documents();
    assert!(docs.len() >= 10, "{} documents", docs.len());
    for (file, doc) in &docs {
        if let Err(e) = check(doc) {
            panic!("{file}: {} {}: {e}", doc["kind"], doc["metadata"]["name"]);
        }
    }
    // The checker itself: a misspelt field is caught, a wrong type too.
    let mut typo = find(&docs, "Service", "conclave").clone();
    typo["spec"]["publishNotReadyAdresses"] = Value::Bool(true);
    assert!(
        check(&typo)
            .unwrap_err()
            .contains("publishNotReadyAdresses")
    );
    let mut wrong = find(&docs, "StatefulSet", "conclave").clone();
    wrong["spec"]["replicas"] = Value::String("three".into());
    assert!(check(&wrong).is_err());

    // kustomization.yaml lists every manifest, and its Secret every file generate.sh makes.
    let kustomization: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(manifests_dir().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let files: BTreeSet<String> = docs.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(listed, files);

    // The StatefulSet, its headless Service and the SRV name its agents join through.
    let sts = find(&docs, "StatefulSet", "conclave");
    let headless = find(&docs, "Service", "conclave");
    assert_eq!(sts["spec"]["serviceName"], "conclave");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"], true,
        "voters must find each other before any is ready (see the test below)"
    );
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let rpc_port = headless["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "rpc")
        .expect("a port named rpc (the SRV record's _rpc)");
    assert_eq!(rpc_port["protocol"], "TCP");
    let args = container(sts)["args"].as_array().unwrap().clone();
    assert!(
        args.iter().any(|a| a
            .as_str()
            .is_some_and(|a| a.starts_with("srv:_rpc._tcp.conclave."))),
        "{args:?}"
    );
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in headless["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the headless Service selects the voters");
    }
    let pdb = find(&docs, "PodDisruptionBudget", "conclave");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    // The Role reaches one ConfigMap and nothing else.
    let role = find(&docs, "Role", "conclave-peers-writer");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0]["resourceNames"],
        serde_json::json!(["conclave-peers"])
    );
    assert!(
        !rules[0]["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "*")
    );

    // Every /secrets/ file the configs and probes name is one the Secret holds.
    let held: BTreeSet<String> = kustomization["secretGenerator"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect();
    let all_text = docs
        .iter()
        .map(|(_, d)| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for used in all_text.split("/secrets/").skip(1) {
        let name: String = used
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .collect();
        assert!(held.contains(&name), "/secrets/{name} is not in the Secret");
    }
}

fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// Substitute the Downward API variables the way the kubelet does for `$(NAME)`.
fn expand(s: &str, pod: &str, namespace: &str) -> String {
    s.replace("$(POD_NAME)", pod)
        .replace("$(POD_NAMESPACE)", namespace)
}

/// How the test's cluster DNS publishes the voter pods behind the headless Service.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Publish {
    /// `publishNotReadyAddresses: false`: only pods whose readiness probe passes.
    ReadyOnly,
    /// `publishNotReadyAddresses: true`: every pod that exists.
    AllPods,
}

struct ClusterDns {
    addr: SocketAddr,
    mode: Arc<Mutex<Publish>>,
    /// Which pods are ready, as their readiness probes said last.
    ready: Arc<Mutex<BTreeSet<usize>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The DNS name labels of `qname` in a query (from byte 12), and where the question ends.
fn question(q: &[u8]) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            return Some((labels.join("."), i + 5));
        }
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A DNS server answering like the cluster DNS for a headless Service `conclave` in
/// `namespace`: SRV `_rpc._tcp.conclave.NS.svc.cluster.local` → one record per published pod
/// (its RPC port, target `conclave-N.conclave.NS.svc.cluster.local`), A for a published pod's
/// name → 127.0.0.1, NXDOMAIN for anything else (or nothing published).
fn cluster_dns(namespace: &str, rpc_ports: Vec<u16>) -> ClusterDns {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let dns = ClusterDns {
        addr: sock.local_addr().unwrap(),
        mode: Arc::new(Mutex::new(Publish::ReadyOnly)),
        ready: Arc::default(),
        stop: Arc::default(),
    };
    let (mode, ready, stop) = (dns.mode.clone(), dns.ready.clone(), dns.stop.clone());
    let srv_name = format!("_rpc._tcp.conclave.{namespace}.svc.cluster.local");
    let namespace = namespace.to_owned();
    let pod = move |i: usize| format!("conclave-{i}.conclave.{namespace}.svc.cluster.local");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            let Some((name, end)) = question(q) else {
                continue;
            };
            let qtype = u16::from_be_bytes([q[end - 4], q[end - 3]]);
            let published: Vec<usize> = match *mode.lock().unwrap() {
                Publish::AllPods => (0..rpc_ports.len()).collect(),
                Publish::ReadyOnly => ready.lock().unwrap().iter().copied().collect(),
            };
            let mut answers: Vec<Vec<u8>> = Vec::new();
            let mut known = false;
            if name == srv_name && !published.is_empty() {
                known = true;
                if qtype == 33 {
                    for &i in &published {
                        let mut rdata = vec![0, 0, 0, 10];
                        rdata.extend_from_slice(&rpc_ports[i].to_be_bytes());
                        rdata.extend_from_slice(&encode_name(&pod(i)));
                        answers.push(rdata);
                    }
                }
            }
            if published.iter().any(|&i| name == pod(i)) {
                known = true;
                if qtype == 1 {
                    answers.push(vec![127, 0, 0, 1]);
                }
            }
            let mut reply = Vec::with_capacity(512);
            reply.extend_from_slice(&q[0..2]);
            // Response, recursion desired and available; NXDOMAIN for an unknown name.
            reply.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
            reply.extend_from_slice(&[0, 1]);
            reply.extend_from_slice(&(answers.len() as u16).to_be_bytes());
            reply.extend_from_slice(&[0, 0, 0, 0]);
            reply.extend_from_slice(&q[12..end]);
            for rdata in answers {
                reply.extend_from_slice(&[0xc0, 0x0c]);
                reply.extend_from_slice(&qtype.to_be_bytes());
                reply.extend_from_slice(&[0, 1, 0, 0, 0, 1]); // IN, TTL 1 s
                reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                reply.extend_from_slice(&rdata);
            }
            let _ = sock.send_to(&reply, from);
        }
    });
    dns
}

/// The voter pods as processes, killed (by PID) when dropped.
struct Pods(Vec<Child>);

impl Drop for Pods {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run one of the manifest's probe commands against the pod at `http`, with its files.
fn probe(command: &Value, http: SocketAddr, secrets: &Path) -> bool {
    let words: Vec<String> = command
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w.as_str()
                .unwrap()
                .replace("https://127.0.0.1:7400", &format!("https://{http}"))
                .replace("/secrets/", &format!("{}/", secrets.display()))
        })
        .collect();
    assert_eq!(words[0], "/usr/local/bin/conclave");
    Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(&words[1..])
        .env_remove("CONCLAVE_ADDR")
        .env_remove("CONCLAVE_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The decision behind `publishNotReadyAddresses: true`, shown with the manifest's own
/// agents: published like ready-only endpoints, three new voters never meet (none is ready
/// before they have met); published like all pods, the same three form a cluster, turn
/// ready by the manifest's readiness probe and stay live by its liveness probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_form_from_zero_pods_only_when_not_ready_pods_are_published() {
    let docs = documents();
    let sts = find(&docs, "StatefulSet", "conclave").clone();
    let agent_config = find(&docs, "ConfigMap", "conclave-agent").clone();
    let root = tempfile::tempdir().unwrap();
    let secrets_root = root.path().join("secrets");
    let made = Command::new("bash")
        .arg(manifests_dir().join("generate.sh"))
        .arg(&secrets_root)
        .arg("test-ns")
        .env("CONCLAVE_BIN", env!("CARGO_BIN_EXE_conclave"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let secrets = secrets_root.join("agents");
    let voter_toml = agent_config["data"]["voter.toml"]
        .as_str()
        .unwrap()
        .replace("/secrets/", &format!("{}/", secrets.display()));
    let config = root.path().join("voter.toml");
    std::fs::write(&config, voter_toml).unwrap();

    let c = container(&sts);
    let (http, rpc): (Vec<SocketAddr>, Vec<SocketAddr>) =
        (0..3).map(|_| (free_addr(), free_addr())).unzip();
    let dns = cluster_dns("test-ns", rpc.iter().map(SocketAddr::port).collect());
    let mut pods = Pods(Vec::new());
    for i in 0..3 {
        let pod = format!("conclave-{i}");
        let mut args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| expand(a.as_str().unwrap(), &pod, "test-ns"))
            .collect();
        // Pod DNS names resolve through the cluster DNS in a pod, not through this
        // machine's resolver: advertise the loopback addresses instead.
        for flag in ["--advertise-rpc-addr", "--advertise-http-addr"] {
            let at = args.iter().position(|a| a == flag).unwrap();
            args.drain(at..at + 2);
        }
        args.iter_mut()
            .filter(|a| a.starts_with("/etc/conclave/"))
            .for_each(|a| *a = config.display().to_string());
        let dir = root.path().join(&pod);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(&args)
            .args(["--data-dir", &dir.join("data").display().to_string()])
            .args(["--http-addr", &http[i].to_string()])
            .args(["--rpc-addr", &rpc[i].to_string()])
            .args(["--dns-server", &dns.addr.to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        pods.0.push(child);
    }
    let readiness = &c["readinessProbe"]["exec"]["command"];
    let liveness = &c["livenessProbe"]["exec"]["command"];
    let logs = || {
        (0..3)
            .map(|i| {
                std::fs::read_to_string(root.path().join(format!("conclave-{i}/log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let probe_all = |command: &Value| {
        (0..3)
            .filter(|&i| probe(command, http[i], &secrets))
            .count()
    };

    // Ready-only endpoints: the pods are alive but never meet.
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let ready: BTreeSet<usize> = (0..3)
            .filter(|&i| probe(readiness, http[i], &secrets))
            .collect();
        assert!(
            ready.is_empty(),
            "ready without meeting? {ready:?}\n{}",
            logs()
        );
        *dns.ready.lock().unwrap() = ready;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while probe_all(liveness) < 3 || !logs().contains("resolves to an address yet") {
        assert!(
            Instant::now() < deadline,
            "alive and waiting for DNS?\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(probe_all(readiness) == 0, "{}", logs());

    // Every pod published: they form, and the readiness probe passes on all three.
    *dns.mode.lock().unwrap() = Publish::AllPods;
    let deadline = Instant::now() + Duration::from_secs(40);
    while probe_all(readiness) < 3 {
        assert!(Instant::now() < deadline, "never ready\n{}", logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(probe_all(liveness), 3, "{}", logs());
    // One cluster of three voters, seen through the API with the manifest's TLS and token
    // (the token works once the leader has applied the ACL bootstrap, just after forming).
    let token = std::fs::read_to_string(secrets.join("management-token")).unwrap();
    let status_now = || {
        let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args([
                "status",
                "-o",
                "json",
                "--addr",
                &format!("https://{}", http[2]),
            ])
            .arg("--ca-file")
            .arg(secrets.join("ca.pem"))
            .arg("--cert-file")
            .arg(secrets.join("cli.pem"))
            .arg("--key-file")
            .arg(secrets.join("cli-key.pem"))
            .args(["--token", token.trim()])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = status_now();
    while status["members"].as_array().is_none() {
        assert!(Instant::now() < deadline, "{status}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
        status = status_now();
    }
    let voters = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .count();
    assert_eq!(voters, 3, "{status}");
    assert!(status["leader_id"].is_u64(), "{status}");
}
