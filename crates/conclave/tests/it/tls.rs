//! HTTPS for the API: an operator's three commands to a mutual-TLS node, what clients
//! without the right certificate are told, files that do not fit refused at start, and
//! certificates rotated without a restart (on a file change under write load, on SIGHUP).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{cluster_env, eventually};
use crate::support::{Agent, BIN, free_addr, run_token, with_run_token};

/// Run the CLI with `env` (and nothing from this process's TLS mode).
fn cli_env(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("CONCLAVE_ADDR")
        .env_remove("CONCLAVE_MTLS_CA_FILE")
        .env_remove("CONCLAVE_MTLS_CERT_FILE")
        .env_remove("CONCLAVE_MTLS_KEY_FILE")
        .envs(run_token().map(|t| ("CONCLAVE_TOKEN", t)))
        .envs(env.iter().copied())
        .output()
        .expect("run the CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `conclave tls ca create` and `tls cert create` for `names`, in `dir`.
fn make_pki(dir: &Path, names: &[&str]) {
    let d = dir.to_str().expect("utf-8 path");
    let (code, out, err) = cli_env(&["tls", "ca", "create", "--dir", d], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for name in names {
        let (code, out, err) = cli_env(
            &[
                "tls",
                "cert",
                "create",
                "--dir",
                d,
                "--name",
                name,
                "--ip",
                "127.0.0.1",
            ],
            &[],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("{name}-key.pem (owner-only)")),
            "{out}"
        );
    }
}

/// Agent flags for `name`'s certificate in `pki`, verifying clients against its CA.
fn tls_flags(pki: &Path, name: &str) -> Vec<String> {
    vec![
        "--tls-ca-file".into(),
        pki.join("ca.pem").display().to_string(),
        "--tls-cert-file".into(),
        pki.join(format!("{name}.pem")).display().to_string(),
        "--tls-key-file".into(),
        pki.join(format!("{name}-key.pem")).display().to_string(),
    ]
}

/// `pki`'s CA, and the client certificate `client` when given.
fn client_files(pki: &Path, client: Option<&str>) -> conclave_tls::ClientFiles {
    conclave_tls::ClientFiles {
        ca_file: Some(pki.join("ca.pem")),
        cert_file: client.map(|c| pki.join(format!("{c}.pem"))),
        key_file: client.map(|c| pki.join(format!("{c}-key.pem"))),
    }
}

fn https_client(pki: &Path, client: Option<&str>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let files = client_files(pki, client);
    let builder = reqwest::Client::builder()
        .use_preconfigured_tls(conclave_tls::client_config(&files).expect("client config"))
        .timeout(Duration::from_secs(10));
    // Secure mode turns ACLs on in every agent, these included.
    with_run_token(builder).build().expect("client")
}

fn https(agent: &Agent, path: &str) -> String {
    format!("https://{}{path}", agent.http)
}

async fn status(client: &reqwest::Client, agent: &Agent) -> Option<Value> {
    client
        .get(https(agent, "/v1/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Spawn an agent serving HTTPS and wait until it answers `client`.
async fn start_https(
    dir: &Path,
    flags: &[String],
    env: &[(&str, &str)],
    client: &reqwest::Client,
) -> Agent {
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::spawn_env(dir, free_addr(), free_addr(), &args, env);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // In secure mode, also until the agent knows the run's token (its bootstrap).
        let probe = if run_token().is_some() {
            "/v1/acl/token/self"
        } else {
            "/v1/health"
        };
        if let Ok(r) = client.get(https(&agent, probe)).send().await
            && r.status().is_success()
        {
            return agent;
        }
        assert!(
            Instant::now() < deadline,
            "no HTTPS health within 20 s:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_operator_gets_a_mutual_tls_node_in_three_commands() {
    let root = tempfile::tempdir().expect("tempdir");
    let pki = root.path().join("tls");
    make_pki(&pki, &["node-1", "cli"]);
    let client = https_client(&pki, Some("cli"));
    let agent = start_https(root.path(), &tls_flags(&pki, "node-1"), &[], &client).await;
    let addr = https(&agent, "");
    let ca = pki.join("ca.pem");
    let (cert, key) = (pki.join("cli.pem"), pki.join("cli-key.pem"));
    let mtls: [(&str, &Path); 3] = [
        ("CONCLAVE_MTLS_CA_FILE", &ca),
        ("CONCLAVE_MTLS_CERT_FILE", &cert),
        ("CONCLAVE_MTLS_KEY_FILE", &key),
    ];

    // The CLI over HTTPS, its files from the seed-style variables.
    let (code, out, err) = cli_env(&["kv", "put", "app/color", "blue", "--addr", &addr], &mtls);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli_env(&["kv", "get", "app/color", "--addr", &addr], &mtls);
    assert_eq!((code, out.trim()), (0, "blue"), "{err}");

    // No client certificate: refused by the agent, and the CLI says it was TLS.
    let (code, _, err) = cli_env(
        &[
            "kv",
            "get",
            "app/color",
            "--addr",
            &addr,
            "--ca-file",
            ca.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("TLS with") && err.contains("--cert-file"),
        "{err}"
    );
    // An https:// address without a CA: a usage error naming the flag.
    let (code, _, err) = cli_env(&["kv", "get", "app/color", "--addr", &addr], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca-file"), "{err}");
    // A CA that did not sign the agent's certificate: the CLI does not trust it.
    let other = root.path().join("other");
    make_pki(&other, &["cli"]);
    let (code, _, err) = cli_env(
        &["kv", "get", "app/color", "--addr", &addr],
        &[
            ("CONCLAVE_MTLS_CA_FILE", &other.join("ca.pem")),
            ("CONCLAVE_MTLS_CERT_FILE", &other.join("cli.pem")),
            ("CONCLAVE_MTLS_KEY_FILE", &other.join("cli-key.pem")),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("invalid peer certificate"), "{err}");

    // Plain HTTP on the HTTPS port: a JSON 400 that says so.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v1/status", agent.http))
        .send()
        .await
        .expect("a plain-HTTP answer");
    assert_eq!(plain.status(), 400);
    let body: Value = plain.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("HTTPS only")
    );

    // The certificate's identity and expiry in /v1/status and /metrics.
    let s = status(&client, &agent).await.expect("status");
    let tls = &s["tls"];
    assert_eq!(tls["subject"], "CN=node-1", "{s}");
    assert_eq!(tls["verify_incoming"], true);
    assert!(
        tls["expires_in_seconds"].as_i64().unwrap_or(0) > 364 * 86_400,
        "{tls}"
    );
    assert!(tls["reload_error"].is_null());
    let metrics = client
        .get(https(&agent, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let expiry = format!(
        "conclave_tls_certificate_expiry_timestamp_seconds {}",
        tls["not_after"]
    );
    assert!(metrics.contains(&expiry), "{metrics}");
    assert!(
        metrics.contains("conclave_tls_handshake_failures_total"),
        "{metrics}"
    );
}

#[test]
fn certificates_that_do_not_fit_stop_the_agent_naming_the_files() {
    let root = tempfile::tempdir().expect("tempdir");
    let pki = root.path().join("tls");
    make_pki(&pki, &["node-1", "node-2"]);
    let other = root.path().join("other");
    make_pki(&other, &[]);
    let start = |flags: Vec<String>| {
        let out = Command::new(BIN)
            .args(["agent", "--data-dir"])
            .arg(root.path().join("data"))
            .args(["--http-addr", &free_addr().to_string()])
            .args(["--rpc-addr", &free_addr().to_string()])
            .args(&flags)
            .output()
            .expect("agent");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut swapped = tls_flags(&pki, "node-1");
    swapped[5] = pki.join("node-2-key.pem").display().to_string();
    let err = start(swapped);
    assert!(
        err.contains("node-1.pem")
            && err.contains("node-2-key.pem")
            && err.contains("does not match"),
        "{err}"
    );
    let mut foreign = tls_flags(&pki, "node-1");
    foreign[1] = other.join("ca.pem").display().to_string();
    let err = start(foreign);
    assert!(err.contains("is not signed by the CA"), "{err}");
    let err = start(vec![
        "--tls-ca-file".into(),
        pki.join("ca.pem").display().to_string(),
    ]);
    assert!(err.contains("tls.cert_file"), "{err}");
}

/// SHA-256 (hex) of the certificate the agent presents to a new connection.
async fn served_certificate(agent: &Agent, pki: &Path, client: &str) -> String {
    let files = client_files(pki, Some(client));
    let config = conclave_tls::client_config(&files).expect("client config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(agent.http)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("peer certificate")[0]
        .clone();
    conclave_tls::cert_info(Path::new("peer"), &leaf)
        .expect("info")
        .sha256
}

/// Issue a new `name` certificate from the same CA and move it over the served files.
fn rotate(pki: &Path, name: &str) -> String {
    let staging = pki.join("staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).expect("staging");
    for f in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(pki.join(f), staging.join(f)).expect("copy CA");
    }
    make_cert(&staging, name);
    let cert = staging.join(format!("{name}.pem"));
    let sha = conclave_tls::cert_info(&cert, &conclave_tls::load_certs(&cert).expect("load")[0])
        .expect("info")
        .sha256;
    // Two renames, as a deploy tool does them: for a moment the key does not fit.
    for f in [format!("{name}.pem"), format!("{name}-key.pem")] {
        std::fs::rename(staging.join(&f), pki.join(&f)).expect("rename");
    }
    sha
}

fn make_cert(dir: &Path, name: &str) -> PathBuf {
    let (code, out, err) = cli_env(
        &[
            "tls",
            "cert",
            "create",
            "--dir",
            dir.to_str().expect("utf-8"),
            "--name",
            name,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    dir.join(format!("{name}.pem"))
}

#[tokio::test]
async fn certificates_rotate_under_write_load_without_a_failed_write_or_a_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let pki = root.path().join("tls");
    make_pki(&pki, &["node-1", "cli"]);
    let client = https_client(&pki, Some("cli"));
    let env = [("CONCLAVE_TLS__RELOAD_INTERVAL", "200ms")];
    let agent = start_https(root.path(), &tls_flags(&pki, "node-1"), &env, &client).await;
    let pid = agent.pid();
    let before = served_certificate(&agent, &pki, "cli").await;

    let files = client_files(&pki, Some("cli"));
    let writers = conclave_client::Client::with_files(&https(&agent, ""), &files)
        .and_then(|c| c.with_token(run_token()))
        .expect("client")
        .with_retry(conclave_client::RetryPolicy::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (c, stop, ok, failed) = (writers.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match c
                    .put(&format!("load/{w}"), i.to_string().into_bytes(), None)
                    .await
                {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("write failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rotated = rotate(&pki, "node-1");
    assert_ne!(rotated, before);
    eventually(
        "the agent serves the rotated certificate",
        Duration::from_secs(10),
        || {
            let (agent, pki, rotated) = (&agent, &pki, rotated.clone());
            async move { served_certificate(agent, pki, "cli").await == rotated }
        },
    )
    .await;
    let s = status(&client, &agent).await.expect("status");
    assert_eq!(s["tls"]["sha256"], rotated.as_str(), "{s}");
    let at_rotation = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no write may fail");
    assert!(at_rotation > 0 && ok.load(Ordering::Relaxed) > at_rotation);
    assert_eq!(agent.pid(), pid, "no restart");
    assert!(
        agent.log_text().contains("TLS files reloaded"),
        "{}",
        agent.log_text()
    );
}

#[tokio::test]
async fn sighup_reloads_and_a_bad_file_keeps_the_certificate_served() {
    let root = tempfile::tempdir().expect("tempdir");
    let pki = root.path().join("tls");
    make_pki(&pki, &["node-1", "cli"]);
    let client = https_client(&pki, Some("cli"));
    // Files are checked hourly here: only SIGHUP reloads them within the test.
    let env = [("CONCLAVE_TLS__RELOAD_INTERVAL", "1h")];
    let mut agent = start_https(root.path(), &tls_flags(&pki, "node-1"), &env, &client).await;
    let pid = agent.pid().expect("pid").to_string();
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    let rotated = rotate(&pki, "node-1");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_ne!(
        served_certificate(&agent, &pki, "cli").await,
        rotated,
        "not before SIGHUP"
    );
    hup();
    eventually("SIGHUP reloads", Duration::from_secs(5), || {
        let (agent, pki, rotated) = (&agent, &pki, rotated.clone());
        async move { served_certificate(agent, pki, "cli").await == rotated }
    })
    .await;

    // A truncated key: the reload fails, the status says why, the rotated certificate stays.
    std::fs::write(pki.join("node-1-key.pem"), "-----BEGIN PRIVATE KEY-----\n").expect("write");
    hup();
    eventually(
        "the failed reload is reported",
        Duration::from_secs(5),
        || {
            let (client, agent) = (&client, &agent);
            async move {
                status(client, agent).await.is_some_and(|s| {
                    s["tls"]["reload_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("node-1-key.pem"))
                })
            }
        },
    )
    .await;
    assert_eq!(served_certificate(&agent, &pki, "cli").await, rotated);
    assert!(agent.log_text().contains("still serving the previous ones"));
    // SIGHUP does not stop the agent.
    assert!(agent.wait_exit(Duration::from_millis(100)).is_none());
}

#[tokio::test]
async fn a_client_agent_forwards_to_members_over_mutual_tls() {
    let root = tempfile::tempdir().expect("tempdir");
    let pki = root.path().join("tls");
    make_pki(&pki, &["member", "edge", "cli"]);
    let client = https_client(&pki, Some("cli"));
    let env = cluster_env(&[]);
    let member = start_https(
        &root.path().join("m"),
        &tls_flags(&pki, "member"),
        &env,
        &client,
    )
    .await;
    let mut flags = tls_flags(&pki, "edge");
    flags.extend([
        "--role".into(),
        "client".into(),
        "--join".into(),
        member.rpc.to_string(),
    ]);
    let edge = start_https(&root.path().join("e"), &flags, &env, &client).await;
    eventually(
        "a write through the client agent lands",
        Duration::from_secs(20),
        || {
            let (client, edge) = (&client, &edge);
            async move {
                client
                    .put(https(edge, "/v1/kv/via/edge"))
                    .body("hello")
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        },
    )
    .await;
    let got = client
        .get(https(&member, "/v1/kv/via/edge"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(got, "hello");
    let s = status(&client, &edge).await.expect("client status");
    assert_eq!(s["tls"]["subject"], "CN=edge", "{s}");
}
