//! Start and stop real agents on ephemeral loopback ports; every child is killed by PID on drop.

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
        let child = Command::new(BIN)
            .arg("agent")
            .arg("--data-dir")
            .arg(&data)
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--rpc-addr")
            .arg(rpc.to_string())
            .args(extra)
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
        format!("http://{}{}", self.http, path)
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
        format!("http://{}", self.http)
    }

    pub async fn wait_healthy(&self, timeout: Duration) {
        let client = http();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(self.url("/v1/health")).send().await
                && r.status().is_success()
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("CONCLAVE_ADDR")
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
