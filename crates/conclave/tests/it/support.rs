//! Start and stop real agents on ephemeral loopback ports; every child is killed by PID on drop.
//!
//! With `CONCLAVE_TEST_SECURE=1` every agent serves HTTPS with mutual TLS and requires ACL
//! tokens (bootstrapped with [`TEST_TOKEN`] as its initial management token), and every
//! client here (`http()`, `cli()`, `command()`, `Agent::url`) presents the test
//! certificate and that token: `.ci/run` runs the suite a second time that way.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_conclave");

/// A free loopback address for an agent (TCP and UDP on the port are both free).
///
/// Ports come from [`PORT_RANGE`], below the kernel's ephemeral range, in blocks that each
/// test process claims with an exclusive lock on a file. A port that an agent gives up
/// while a test restarts it is therefore never handed to another test process, nor taken
/// by some outgoing connection as its local port (which the ephemeral range allowed, and
/// which once made a restarted agent fail with "Address already in use").
pub fn free_addr() -> SocketAddr {
    let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if ports.next >= ports.end {
            ports.claim_block();
        }
        let port = ports.next;
        ports.next += 1;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// Where test agents' ports come from; the kernel's ephemeral range starts at 32768.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
const PORT_BLOCK: u16 = 50;

static PORTS: Mutex<PortBlocks> = Mutex::new(PortBlocks {
    locks: Vec::new(),
    next: 0,
    end: 0,
});

/// The blocks of ports this process holds; each lock lasts until the process exits.
struct PortBlocks {
    locks: Vec<File>,
    next: u16,
    end: u16,
}

impl PortBlocks {
    fn claim_block(&mut self) {
        let blocks = (PORT_RANGE.end - PORT_RANGE.start) / PORT_BLOCK;
        let dir = std::env::temp_dir().join("conclave-test-ports");
        std::fs::create_dir_all(&dir).expect("port lock directory");
        // Start where this process's id points, so concurrent processes rarely contend.
        let first = (std::process::id() % u32::from(blocks)) as u16;
        for i in 0..blocks {
            let block = (first + i) % blocks;
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("block-{block}.lock")))
                .expect("port lock file");
            if file.try_lock().is_ok() {
                self.locks.push(file);
                self.next = PORT_RANGE.start + block * PORT_BLOCK;
                self.end = self.next + PORT_BLOCK;
                return;
            }
        }
        panic!("every test port block in {PORT_RANGE:?} is held by another process");
    }
}

/// Whether this run speaks HTTPS with ACL tokens to every agent (`CONCLAVE_TEST_SECURE=1`).
pub fn secure_mode() -> bool {
    std::env::var_os("CONCLAVE_TEST_SECURE").is_some_and(|v| v == "1")
}

/// The management token of every agent in secure mode (its initial management token, and
/// a client agent's agent token).
pub const TEST_TOKEN: &str = "it-management-token-0123456789abcdef0123456789";

/// The variables that turn ACLs on in secure mode.
fn acl_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CONCLAVE_ACL__ENABLED", "true"),
        ("CONCLAVE_ACL__INITIAL_MANAGEMENT_TOKEN", TEST_TOKEN),
        ("CONCLAVE_ACL__AGENT_TOKEN", TEST_TOKEN),
    ]
}

/// `https` in secure mode, else `http`.
pub fn scheme() -> &'static str {
    if secure_mode() { "https" } else { "http" }
}

/// The CA and the certificates (`agent`, `client`) every test of this build shares, made
/// once under the target directory: into a fresh directory, then renamed into place, so
/// concurrent test processes never see half of it.
pub fn pki() -> &'static Path {
    static PKI: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pki");
        if dir.join("client-key.pem").exists() {
            return dir;
        }
        let fresh = tempfile::Builder::new()
            .prefix("test-pki-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("pki dir");
        conclave_tls::issue::create_ca(fresh.path(), 3650).expect("test CA");
        for name in ["agent", "client"] {
            let req = conclave_tls::issue::CertRequest {
                name: name.into(),
                ips: Vec::new(),
                dns: Vec::new(),
                days: 3650,
            };
            conclave_tls::issue::create_cert(fresh.path(), &req).expect("test cert");
        }
        // Losing the race to another process is fine: its copy is as good.
        if std::fs::rename(fresh.path(), &dir).is_ok() {
            std::mem::forget(fresh);
        }
        dir
    })
}

/// The flags that make an agent serve HTTPS with the shared test certificates (mutual TLS).
pub fn tls_agent_flags() -> Vec<String> {
    let p = pki();
    [
        ("--tls-ca-file", "ca.pem"),
        ("--tls-cert-file", "agent.pem"),
        ("--tls-key-file", "agent-key.pem"),
    ]
    .into_iter()
    .flat_map(|(flag, file)| [flag.to_string(), p.join(file).display().to_string()])
    .collect()
}

/// The variables that make the CLI a TLS client with the shared client certificate.
pub fn tls_client_env() -> Vec<(&'static str, PathBuf)> {
    let p = pki();
    vec![
        ("CONCLAVE_MTLS_CA_FILE", p.join("ca.pem")),
        ("CONCLAVE_MTLS_CERT_FILE", p.join("client.pem")),
        ("CONCLAVE_MTLS_KEY_FILE", p.join("client-key.pem")),
    ]
}

/// A rustls client configuration with the shared CA and client certificate.
pub fn tls_client_config() -> rustls::ClientConfig {
    let p = pki();
    conclave_tls::client_config(&conclave_tls::ClientFiles {
        ca_file: Some(p.join("ca.pem")),
        cert_file: Some(p.join("client.pem")),
        key_file: Some(p.join("client-key.pem")),
    })
    .expect("test TLS client")
}

pub struct Agent {
    child: Option<Child>,
    pub http: SocketAddr,
    pub rpc: SocketAddr,
    pub log: PathBuf,
}

impl Agent {
    /// Start an agent with its data in `dir` and wait until it is healthy.
    pub async fn start(dir: &Path, extra: &[&str]) -> Agent {
        let agent = Self::spawn(dir, free_addr(), free_addr(), extra);
        agent.wait_healthy(Duration::from_secs(20)).await;
        agent
    }

    /// [`Agent::start`] with extra environment variables.
    pub async fn start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        let agent = Self::spawn_env(dir, free_addr(), free_addr(), extra, env);
        agent.wait_healthy(Duration::from_secs(20)).await;
        agent
    }

    pub fn spawn(dir: &Path, http: SocketAddr, rpc: SocketAddr, extra: &[&str]) -> Agent {
        Self::spawn_env(dir, http, rpc, extra, &[])
    }

    /// Like [`Agent::spawn`], with extra environment variables.
    pub fn spawn_env(
        dir: &Path,
        http: SocketAddr,
        rpc: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let data = dir.join("data");
        std::fs::create_dir_all(dir).expect("test dir");
        let log = dir.join(format!("agent-{}.log", http.port()));
        let out = std::fs::File::create(&log).expect("log file");
        // A test that brings its own certificates keeps them.
        let own_tls = extra.iter().any(|a| a.starts_with("--tls-"));
        let tls = if secure_mode() && !own_tls {
            tls_agent_flags()
        } else {
            Vec::new()
        };
        let child = Command::new(BIN)
            .arg("agent")
            .arg("--data-dir")
            .arg(&data)
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--rpc-addr")
            .arg(rpc.to_string())
            .args(&tls)
            .args(extra)
            .envs(if secure_mode() { acl_env() } else { Vec::new() })
            .envs(env.iter().copied())
            .env_remove("CONCLAVE_ADDR")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn conclave agent");
        Agent {
            child: Some(child),
            http,
            rpc,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", scheme(), self.http, path)
    }

    /// `GET /v1/status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        http()
            .get(self.url("/v1/status"))
            .send()
            .await
            .expect("status request")
            .json()
            .await
            .expect("status JSON")
    }

    pub fn addr_flag(&self) -> String {
        format!("{}://{}", scheme(), self.http)
    }

    pub async fn wait_healthy(&self, timeout: Duration) {
        let client = http();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(self.url("/v1/health")).send().await
                && r.status().is_success()
                && (!secure_mode() || self.token_works(&client).await)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent on {} not healthy within {timeout:?}; log:\n{}",
                self.http,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether this agent accepts the test token yet (the initial bootstrap is applied).
    async fn token_works(&self, client: &reqwest::Client) -> bool {
        client
            .get(self.url("/v1/acl/token/self"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Wait for the process to exit on its own, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send a signal and wait for the exit, up to `timeout`.
    pub fn signal_and_wait(&mut self, sig: &str, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Status, `error.code` and body of an error response, checking the contract's shape:
/// `{"error": {"code", "message", "hint"}}`.
pub async fn error_code(
    resp: reqwest::Response,
) -> (reqwest::StatusCode, String, serde_json::Value) {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["hint"].is_string(), "{body}");
    (status, code, body)
}

pub fn http() -> reqwest::Client {
    http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A client builder as this run's clients are: in secure mode, mutual TLS and the test
/// token on every request.
pub fn http_builder() -> reqwest::ClientBuilder {
    with_run_token(anonymous_builder())
}

/// The token this run's clients send: the test token in secure mode, none otherwise.
pub fn run_token() -> Option<&'static str> {
    secure_mode().then_some(TEST_TOKEN)
}

/// `builder` sending [`run_token`] on every request.
pub fn with_run_token(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let Some(token) = run_token() else {
        return builder;
    };
    let mut headers = reqwest::header::HeaderMap::new();
    let mut auth =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    auth.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, auth);
    builder.default_headers(headers)
}

/// A client builder that speaks this run's protocol (mutual TLS in secure mode) and sends
/// no token: an anonymous caller.
pub fn anonymous_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder();
    if secure_mode() {
        builder.use_preconfigured_tls(tls_client_config())
    } else {
        builder
    }
}

/// A command running the CLI as this run's clients do (TLS variables in TLS mode, no
/// inherited `CONCLAVE_ADDR`).
pub fn command() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("CONCLAVE_ADDR");
    if let Some(token) = run_token() {
        c.envs(tls_client_env());
        c.env("CONCLAVE_TOKEN", token);
    }
    c
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cli");
    {
        let mut si = child.stdin.take().expect("stdin");
        if let Some(data) = stdin {
            si.write_all(data).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("cli output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
