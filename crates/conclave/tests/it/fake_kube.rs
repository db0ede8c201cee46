//! An in-test Kubernetes API server for ConfigMaps: no API server can be installed here, so
//! the ConfigMap publisher is tested against this one, which speaks the real protocol (the
//! paths, bearer tokens, `Status` error bodies and `resourceVersion` concurrency of
//! `/api/v1/namespaces/{ns}/configmaps`) with faults on demand: conflicting writes, 401 and
//! 403, slow answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One write the server accepted or refused.
#[derive(Debug, Clone)]
pub struct Write {
    pub method: &'static str,
    /// Which token made it (the agents have one each).
    pub token: String,
    pub status: u16,
}

#[derive(Default)]
pub struct Faults {
    /// The next this many PUTs find the object changed by someone else: 409.
    pub conflicts: u32,
    /// Every answer waits this long.
    pub delay: Duration,
    /// Tokens refused with 403 (a Role that does not cover them).
    pub forbidden: bool,
    /// Every token refused with 401 (as after a token rotation).
    pub unauthorized: bool,
}

#[derive(Default)]
pub struct KubeState {
    /// `namespace/name` → (resourceVersion, data).
    pub objects: BTreeMap<String, (u64, BTreeMap<String, String>)>,
    pub writes: Vec<Write>,
    pub faults: Faults,
    next_version: u64,
}

pub struct FakeKube {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<KubeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<KubeState>>;

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        })),
    )
        .into_response()
}

fn object(ns: &str, name: &str, version: u64, data: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": version.to_string()},
        "data": data,
    })
}

/// The caller's token, or the refusal the faults call for.
async fn admit(state: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let delay = state.lock().unwrap().faults.delay;
    tokio::time::sleep(delay).await;
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let s = state.lock().unwrap();
    match token {
        Some(t) if !s.faults.unauthorized => {
            if s.faults.forbidden {
                Err(status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "configmaps is forbidden: User cannot update resource".into(),
                ))
            } else {
                Ok(t)
            }
        }
        _ => Err(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        )),
    }
}

/// [`admit`], and the body as JSON.
async fn admit_json(
    state: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Value), Response> {
    let token = admit(state, headers).await?;
    let body = serde_json::from_slice::<Value>(body)
        .map_err(|_| status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into()))?;
    Ok((token, body))
}

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("configmaps \"{name}\" not found"),
    )
}

async fn get_one(
    State(state): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&state, &headers).await {
        return r;
    }
    let s = state.lock().unwrap();
    match s.objects.get(&format!("{ns}/{name}")) {
        Some((v, data)) => Json(object(&ns, &name, *v, data)).into_response(),
        None => not_found(&name),
    }
}

fn data_of(body: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(body["data"].clone()).unwrap_or_default()
}

async fn create(
    State(state): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (token, body) = match admit_json(&state, &headers, &body).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut s = state.lock().unwrap();
    let key = format!("{ns}/{name}");
    let code = if s.objects.contains_key(&key) {
        StatusCode::CONFLICT
    } else {
        StatusCode::CREATED
    };
    s.writes.push(Write {
        method: "POST",
        token,
        status: code.as_u16(),
    });
    if code == StatusCode::CONFLICT {
        return status(
            code,
            "AlreadyExists",
            format!("configmaps \"{name}\" already exists"),
        );
    }
    s.next_version += 1;
    let v = s.next_version;
    let data = data_of(&body);
    s.objects.insert(key, (v, data.clone()));
    (code, Json(object(&ns, &name, v, &data))).into_response()
}

async fn replace(
    State(state): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (token, body) = match admit_json(&state, &headers, &body).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut s = state.lock().unwrap();
    let key = format!("{ns}/{name}");
    if s.faults.conflicts > 0 {
        // Someone else wrote just now: the version moves on.
        s.faults.conflicts -= 1;
        s.next_version += 1;
        let v = s.next_version;
        if let Some(o) = s.objects.get_mut(&key) {
            o.0 = v;
        }
    }
    let Some((current, _)) = s.objects.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("configmaps \"{name}\" not found"),
        );
    };
    let sent = body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ok = sent.is_empty() || sent == current.to_string();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    s.writes.push(Write {
        method: "PUT",
        token,
        status: code.as_u16(),
    });
    if !ok {
        return status(
            code,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    s.next_version += 1;
    let v = s.next_version;
    let data = data_of(&body);
    s.objects.insert(key, (v, data.clone()));
    Json(object(&ns, &name, v, &data)).into_response()
}

/// A JSON merge patch of `data` (what `kubectl patch --type merge` sends).
async fn patch(
    State(state): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (token, body) = match admit_json(&state, &headers, &body).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut s = state.lock().unwrap();
    let key = format!("{ns}/{name}");
    let Some((_, mut data)) = s.objects.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("configmaps \"{name}\" not found"),
        );
    };
    if let Some(changes) = body["data"].as_object() {
        for (k, v) in changes {
            match v.as_str() {
                Some(text) => {
                    data.insert(k.clone(), text.to_owned());
                }
                None => {
                    data.remove(k);
                }
            }
        }
    }
    s.writes.push(Write {
        method: "PATCH",
        token,
        status: 200,
    });
    s.next_version += 1;
    let v = s.next_version;
    s.objects.insert(key, (v, data.clone()));
    Json(object(&ns, &name, v, &data)).into_response()
}

pub async fn start() -> FakeKube {
    let state: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/api/v1/namespaces/{ns}/configmaps", post(create))
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(get_one).put(replace).patch(patch),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeKube { addr, state, task }
}

impl FakeKube {
    /// A kubeconfig reaching this server as `token`.
    pub fn kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let path = dir.join(format!("kubeconfig-{token}"));
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: agent\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: agent\ncurrent-context: fake\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    pub fn data(&self, key: &str) -> Option<BTreeMap<String, String>> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(key)
            .map(|(_, d)| d.clone())
    }

    pub fn writes(&self) -> Vec<Write> {
        self.state.lock().unwrap().writes.clone()
    }
}
