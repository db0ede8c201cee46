//! The dashboard (`/ui`) in a real headless Chromium, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, with fantoccini): against a real 3-node cluster with
//! ACLs on, a login with a token, every page loads with no console error, the charts draw
//! the agent's samples, demote / promote / transfer / remove / remove-dead work end to end
//! with their previews (including a refusal when a node is down), and a read-only token sees
//! the actions disabled with the capability it lacks. A screenshot of each page is written
//! to `target/dashboard-screenshots/` and its path printed.
//!
//! `CONCLAVE_DASHBOARD_TIMINGS=FILE` also writes first-paint and refresh timings as JSON
//! (bench/dashboard.sh); the test itself asserts no timing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::acl::{call, token_with};
use crate::cluster::{Node, cluster_env, eventually, start_static};
use crate::support::{TEST_TOKEN, free_addr, secure_mode};

const ACL: [(&str, &str); 3] = [
    ("CONCLAVE_ACL__ENABLED", "true"),
    ("CONCLAVE_ACL__INITIAL_MANAGEMENT_TOKEN", TEST_TOKEN),
    ("CONCLAVE_ACL__AGENT_TOKEN", TEST_TOKEN),
];

/// chromedriver, stopped (by PID) when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver's legacy log endpoint: the browser console since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.into()),
        )
    }
}

async fn start_browser() -> (Driver, Client) {
    let port = free_addr().port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver) is installed");
    let driver = Driver(driver);
    let binary = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is installed");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--no-first-run"],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The console messages since the last read, as (level, message).
async fn console(client: &Client) -> Vec<(String, String)> {
    let log = client.issue_cmd(BrowserLog).await.expect("browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["level"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn assert_no_console_error(client: &Client, page: &str) {
    let errors: Vec<_> = console(client)
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(errors.is_empty(), "console errors on {page}: {errors:?}");
}

fn screenshots() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    println!("dashboard screenshot: {}", path.display());
}

/// Wait until the element at `css` exists and its text contains `text`.
async fn wait_text(client: &Client, css: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = client.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t.contains(text) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("{css} never showed {text:?}; last: {last:?}");
}

/// Open page `name` afresh (a full load: the same address with only a new fragment would
/// not fetch again) and wait until it has rendered.
async fn open(client: &Client, base: &str, name: &str) {
    static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let load = LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    client
        .goto(&format!("{base}/ui?load={load}#/{name}"))
        .await
        .expect("navigate");
    wait_loaded(client, name.split('?').next().unwrap_or(name)).await;
}

async fn wait_loaded(client: &Client, name: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!("#page[data-loaded='{name}']")))
        .await
        .unwrap_or_else(|e| panic!("page {name} did not render: {e}"));
}

async fn click(client: &Client, css: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Give `token` to the open login dialog and submit it.
async fn log_in(client: &Client, token: &str) {
    let field = client.find(Locator::Css("#login-token")).await.unwrap();
    field.send_keys(token).await.expect("type the token");
    click(client, "#login-submit").await;
}

/// Preview a change in the confirmation dialog (its effect must contain `effect`), then
/// confirm it.
async fn confirm(client: &Client, effect: &str) {
    wait_text(client, "#confirm-effect", effect).await;
    click(client, "#confirm-ok:not([disabled])").await;
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#confirm:not([open])"))
        .await
        .expect("the dialog closes once the change is made");
}

async fn role_of(node: &Node, id: u64) -> Option<String> {
    let (_, members) = call(
        &node.agent,
        Method::GET,
        "/v1/cluster/members",
        Some(TEST_TOKEN),
        None,
    )
    .await;
    members.as_array()?.iter().find_map(|m| {
        (m["node_id"].as_u64() == Some(id)).then(|| m["role"].as_str().unwrap_or("").to_owned())
    })
}

/// `GET /v1/cluster/status` with the management token (`None` while no leader answers).
async fn cluster_status(agent: &crate::support::Agent) -> Option<Value> {
    let (st, s) = call(
        agent,
        Method::GET,
        "/v1/cluster/status",
        Some(TEST_TOKEN),
        None,
    )
    .await;
    st.is_success().then_some(s)
}

/// The index of the node that leads.
async fn leader_of(nodes: &[Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = cluster_status(&nodes[0].agent).await
            && let Some(id) = s["leader_id"].as_u64()
        {
            for (i, n) in nodes.iter().enumerate() {
                if node_id(n).await == id {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn node_id(node: &Node) -> u64 {
    let (_, s) = call(
        &node.agent,
        Method::GET,
        "/v1/status",
        Some(TEST_TOKEN),
        None,
    )
    .await;
    s["node_id"].as_u64().expect("node id")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium and chromium-driver: run by .ci/run"]
async fn the_dashboard_shows_and_changes_a_real_cluster_in_a_real_browser() {
    assert!(
        !secure_mode(),
        "run without CONCLAVE_TEST_SECURE: the browser holds no client certificate"
    );
    let tmp = tempfile::tempdir().unwrap();
    let env: Vec<_> = cluster_env(&[]).into_iter().chain(ACL).collect();
    let mut nodes = start_static(tmp.path(), 3, &[], &env).await;
    let leader = leader_of(&nodes).await;
    let lead = &nodes[leader];
    // History to show: a document in two versions, some writes for the charts.
    for peers in ["10.0.0.1:9", "10.0.0.2:9"] {
        let (st, body) = call(
            &lead.agent,
            Method::PUT,
            "/v1/config/remote-peers/gateway",
            Some(TEST_TOKEN),
            Some(json!({"peers": [{"node_id": "cloud-1", "address": peers}]})),
        )
        .await;
        assert!(st.is_success(), "{st} {body}");
    }
    let reader = token_with(
        &lead.agent,
        TEST_TOKEN,
        "dashboard-viewer",
        json!([{"resource": "cluster", "access": "read"}, {"resource": "audit", "access": "read"},
               {"resource": "config", "access": "read"}, {"resource": "elections", "access": "read"}]),
    )
    .await;
    for i in 0..40 {
        call(
            &lead.agent,
            Method::PUT,
            &format!("/v1/kv/load/{i}"),
            Some(TEST_TOKEN),
            Some(json!(i)),
        )
        .await;
    }
    let (_driver, client) = start_browser().await;
    let base = format!("http://{}", lead.agent.http);
    let started = Instant::now();

    // Anonymous: the page loads and asks for a token (the API answered 401).
    client
        .goto(&format!("{base}/ui"))
        .await
        .expect("open the dashboard");
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login[open]"))
        .await
        .expect("a login dialog when the API wants a token");
    let paint: Value = client
        .execute(
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null;",
            vec![],
        )
        .await
        .expect("paint timing");
    // Only the refused API calls may have been logged before the login.
    for (level, message) in console(&client).await {
        assert!(
            level != "SEVERE" || message.contains("401"),
            "console before login: {level} {message}"
        );
    }
    log_in(&client, TEST_TOKEN).await;
    wait_loaded(&client, "overview").await;
    wait_text(&client, "#who-text", "cluster:").await;

    // Overview: the leader, a healthy quorum, and charts drawn from at least two samples.
    let leader_id = node_id(lead).await;
    wait_text(&client, "#card-leader", &leader_id.to_string()).await;
    wait_text(&client, "#card-quorum", "healthy").await;
    let refresh_started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let points: Value = client
            .execute(
                "return [...document.querySelectorAll('#chart-writes path.series, #chart-lag-entries path.series')].map(p => +p.dataset.points);",
                vec![],
            )
            .await
            .unwrap();
        let drawn: Vec<u64> = points
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        // One writes series and one lag series per node, each with two points or more.
        if drawn.len() >= 4 && drawn.iter().all(|n| *n >= 2) {
            break;
        }
        assert!(Instant::now() < deadline, "the charts drew {drawn:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let refreshed = refresh_started.elapsed();
    // Each refresh of the overview, from its first request to its data drawn.
    let renders: Value = client
        .execute(
            "return performance.getEntriesByName('render:overview').map(m => m.duration);",
            vec![],
        )
        .await
        .unwrap();
    assert_no_console_error(&client, "overview").await;
    screenshot(&client, "overview").await;

    // Nodes: demote a follower, then promote it back, through the confirmations.
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let fid = node_id(&nodes[follower]).await;
    open(&client, &base, "nodes").await;
    screenshot(&client, "nodes").await;
    click(
        &client,
        &format!("button[data-action='demote'][data-node='{fid}']"),
    )
    .await;
    confirm(&client, "becomes a learner").await;
    eventually(
        "the follower is a learner",
        Duration::from_secs(20),
        || async { role_of(&nodes[leader], fid).await.as_deref() == Some("learner") },
    )
    .await;
    click(
        &client,
        &format!("button[data-action='promote'][data-node='{fid}']"),
    )
    .await;
    confirm(&client, "becomes a voter").await;
    eventually(
        "the follower votes again",
        Duration::from_secs(30),
        || async { role_of(&nodes[leader], fid).await.as_deref() == Some("voter") },
    )
    .await;
    // Leadership to that node, through the dashboard.
    open(&client, &base, "nodes").await;
    click(
        &client,
        &format!("button[data-action='transfer'][data-node='{fid}']"),
    )
    .await;
    confirm(&client, &format!("to node {fid}")).await;
    eventually("the chosen node leads", Duration::from_secs(20), || async {
        cluster_status(&nodes[leader].agent)
            .await
            .is_some_and(|s| s["leader_id"].as_u64() == Some(fid))
    })
    .await;
    assert_no_console_error(&client, "nodes").await;

    // A node down: demoting another voter would leave no healthy quorum, and the preview
    // says so before anything is sent; removing the dead node goes through.
    let new_leader = follower;
    let down = (0..3).find(|i| *i != new_leader && *i != leader).unwrap();
    let down_id = node_id(&nodes[down]).await;
    nodes[down].agent.kill9();
    let other_id = node_id(&nodes[leader]).await;
    eventually(
        "the leader sees the node down",
        Duration::from_secs(20),
        || async {
            cluster_status(&nodes[new_leader].agent)
                .await
                .is_some_and(|s| {
                    s["members"].as_array().unwrap().iter().any(|m| {
                        m["node_id"].as_u64() == Some(down_id) && m["healthy"] == json!(false)
                    })
                })
        },
    )
    .await;
    // The overview says which voter is down and how many more failures the quorum takes.
    open(&client, &base, "overview").await;
    wait_text(&client, "#alerts", &format!("Voter {down_id}")).await;
    wait_text(
        &client,
        "#card-quorum",
        "2 of 3 voters up, tolerates 0 more",
    )
    .await;
    screenshot(&client, "overview-node-down").await;
    open(&client, &base, "nodes").await;
    click(
        &client,
        &format!("button[data-action='demote'][data-node='{other_id}']"),
    )
    .await;
    wait_text(&client, "#confirm-refusal", "needed for a quorum").await;
    let ok_disabled = client
        .find(Locator::Css("#confirm-ok"))
        .await
        .unwrap()
        .attr("disabled")
        .await
        .unwrap();
    assert!(
        ok_disabled.is_some(),
        "a refused change cannot be confirmed"
    );
    screenshot(&client, "nodes-refusal").await;
    // The browser logs the refused preview (409), and nothing else.
    for (level, message) in console(&client).await {
        assert!(
            level != "SEVERE" || (message.contains("dry_run=true") && message.contains("409")),
            "console on a refused preview: {level} {message}"
        );
    }
    click(&client, "#confirm-cancel").await;
    click(
        &client,
        &format!("button[data-action='remove'][data-node='{down_id}']"),
    )
    .await;
    confirm(&client, "leaves the cluster").await;
    eventually(
        "the dead node is no member",
        Duration::from_secs(20),
        || async {
            role_of(&nodes[new_leader], down_id).await.is_none()
                && cluster_status(&nodes[new_leader].agent)
                    .await
                    .is_some_and(|s| s["members"].as_array().unwrap().len() == 2)
        },
    )
    .await;
    // Remove-dead: its preview lists what gossip would forget.
    open(&client, &base, "nodes").await;
    click(&client, "#remove-dead").await;
    wait_text(&client, "#confirm-effect", "Would remove").await;
    click(&client, "#confirm-cancel").await;
    assert_no_console_error(&client, "nodes after a node went down").await;

    // Configuration: history with a diff, the drift matrix, roles and elections.
    open(&client, &base, "config").await;
    click(&client, "#documents a").await;
    wait_text(&client, "#diff", "10.0.0.2:9").await;
    let diff: Value = client
        .execute(
            "return [document.querySelectorAll('#diff .add').length, document.querySelectorAll('#diff .del').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(diff, json!([1, 1]), "one line changed between the versions");
    wait_text(&client, "#drift", "in sync").await;
    assert_no_console_error(&client, "config").await;
    screenshot(&client, "config").await;

    // Settings: effective values, live or restart, and a reload through the API.
    open(&client, &base, "settings").await;
    wait_text(&client, "#settings tr[data-key='raft']", "restart").await;
    wait_text(&client, "#settings tr[data-key='check']", "live").await;
    assert_no_console_error(&client, "settings").await;
    screenshot(&client, "settings").await;

    // Audit log, filtered to membership changes: the dashboard's demotion is there.
    open(&client, &base, "audit?kind=membership").await;
    wait_text(&client, "#audit", "demote").await;
    assert_no_console_error(&client, "audit").await;
    screenshot(&client, "audit").await;

    // A read-only token: the actions are disabled and say which capability they need.
    // Logging out leaves the API refusing the page's calls, which asks for a token again.
    click(&client, "#login-button").await;
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login[open]"))
        .await
        .expect("logged out, the dashboard asks for a token");
    log_in(&client, &reader).await;
    wait_text(&client, "#who-text", "cluster:read").await;
    // The refusals while logged out were logged; what follows must be clean.
    console(&client).await;
    open(&client, &base, "nodes").await;
    wait_text(&client, ".needs", "need cluster:write").await;
    let enabled: Value = client
        .execute(
            "return [...document.querySelectorAll('button[data-action]')].filter(b => !b.disabled).length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        enabled,
        json!(0),
        "no action is enabled for a read-only token"
    );
    assert_no_console_error(&client, "nodes, read-only").await;
    screenshot(&client, "nodes-read-only").await;

    if let Ok(path) = std::env::var("CONCLAVE_DASHBOARD_TIMINGS") {
        let timings = json!({
            "first_contentful_paint_ms": paint,
            "charts_filled_ms": refreshed.as_millis() as u64,
            "overview_render_ms": renders,
            "whole_test_s": started.elapsed().as_secs(),
            "assets_bytes": asset_bytes(&base).await,
        });
        std::fs::write(path, timings.to_string()).expect("timings file");
    }
    client.close().await.expect("close the browser");
}

async fn asset_bytes(base: &str) -> usize {
    let mut total = 0;
    for file in ["/ui", "/ui/app.js", "/ui/app.css"] {
        let body = reqwest::get(format!("{base}{file}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        total += body.len();
    }
    total
}
