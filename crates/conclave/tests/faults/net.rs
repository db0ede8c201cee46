//! Hosts in network namespaces on one bridge, and the faults a real network has: a host
//! cut off from some peers (iptables DROP inside its namespace), a host gone silent to
//! everyone, a frozen or killed process. Everything created here is removed on drop
//! (namespaces, bridge, the FORWARD rule, processes by PID).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Run a command that must succeed; its output on failure.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run a command whose failure does not matter (clean-up).
fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub struct Net {
    bridge: String,
    pub hosts: Vec<Host>,
}

pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

impl Net {
    /// `n` hosts, 10.213.X.1..n, each in its own namespace with one veth on a new bridge.
    pub fn create(n: usize) -> Net {
        // Unique per test process and per network within it.
        static NETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = NETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{seq}", pid % 100_000);
        let third = ((pid + seq) % 250) as u8;
        let bridge = format!("ccb{tag}");
        let gateway = Ipv4Addr::new(10, 213, third, 254);
        // The test process's own address on the bridge: clients connect from here.
        let net = Net {
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            &bridge,
        ]);
        run(&["ip", "link", "set", &bridge, "up"]);
        // Docker sets FORWARD to DROP and makes bridged frames pass through it.
        run(&[
            "iptables", "-w", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]);
        let mut net = net;
        for i in 1..=n {
            let ns = format!("cc{tag}n{i}");
            let ip = Ipv4Addr::new(10, 213, third, i as u8);
            let outside = format!("cc{tag}h{i}");
            run(&["ip", "netns", "add", &ns]);
            run(&[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            run(&["ip", "link", "set", &outside, "master", &bridge]);
            run(&["ip", "link", "set", &outside, "up"]);
            let exec = |args: &[&str]| {
                let mut full = vec!["ip", "netns", "exec", ns.as_str()];
                full.extend_from_slice(args);
                run(&full);
            };
            exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            exec(&["ip", "link", "set", "eth0", "up"]);
            exec(&["ip", "link", "set", "lo", "up"]);
            net.hosts.push(Host { ns, ip });
        }
        net
    }

    fn in_ns(&self, host: usize, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", self.hosts[host].ns.as_str()];
        full.extend_from_slice(args);
        run(&full);
    }

    /// Drop all traffic between `host` and each of `peers` (both directions, on both sides).
    pub fn cut(&self, host: usize, peers: &[usize]) {
        for &p in peers {
            for (a, b) in [(host, p), (p, host)] {
                let other = self.hosts[b].ip.to_string();
                self.in_ns(
                    a,
                    &["iptables", "-w", "-A", "INPUT", "-s", &other, "-j", "DROP"],
                );
                self.in_ns(
                    a,
                    &["iptables", "-w", "-A", "OUTPUT", "-d", &other, "-j", "DROP"],
                );
            }
        }
    }

    /// Cut `host` off from every other host, but not from the test's clients.
    pub fn isolate(&self, host: usize) {
        let others: Vec<usize> = (0..self.hosts.len()).filter(|h| *h != host).collect();
        self.cut(host, &others);
    }

    /// The host goes silent: nothing in or out but loopback (as if powered off, but its
    /// processes keep running and come back when [`Net::heal`] runs).
    pub fn silence(&self, host: usize) {
        for chain in ["INPUT", "OUTPUT"] {
            let iface = if chain == "INPUT" { "-i" } else { "-o" };
            self.in_ns(
                host,
                &["iptables", "-w", "-A", chain, iface, "eth0", "-j", "DROP"],
            );
        }
    }

    /// Remove every rule the faults added.
    pub fn heal(&self) {
        for h in 0..self.hosts.len() {
            self.in_ns(h, &["iptables", "-w", "-F", "INPUT"]);
            self.in_ns(h, &["iptables", "-w", "-F", "OUTPUT"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            run_quiet(&["ip", "netns", "del", &h.ns]);
        }
        run_quiet(&["ip", "link", "del", &self.bridge]);
        run_quiet(&[
            "iptables",
            "-w",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ]);
    }
}

/// One agent process in a host's namespace.
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    /// Start `bin args…` in `ns` (`ip netns exec` execs it, so the PID is the agent's).
    pub fn spawn(ns: &str, bin: &str, args: &[String], env: &[(&str, &str)], log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, bin])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn in namespace");
        Proc { child: Some(child) }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            run(&["kill", &format!("-{sig}"), &pid.to_string()]);
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` for the exit (SIGKILL after it).
    pub fn stop(&mut self, timeout: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        run_quiet(&["kill", "-TERM", &c.id().to_string()]);
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A frozen process must be thawed to die promptly.
        if let Some(pid) = self.pid() {
            run_quiet(&["kill", "-CONT", &pid.to_string()]);
        }
        self.kill9();
    }
}
