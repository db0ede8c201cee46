//! The dashboard at `/ui`: three files embedded in the binary (no CDN, no build step) that
//! read and change the cluster through the same API as the CLI, with the caller's token.
//!
//! The page holds no data, so it is served to anyone (the ACL guard lets `/ui` through);
//! every request it makes carries the token the user logs in with and is checked as usual.
//! The content security policy allows only these files and requests to this origin.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

#[derive(utoipa::OpenApi)]
#[openapi(paths(page, page_slash, file, dashboard))]
pub(crate) struct Doc;

/// The dashboard's routes, to merge into an agent's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page_slash))
        .route("/ui/{file}", get(file))
        // The database-cluster seed's dashboard path.
        .route("/dashboard", get(dashboard))
}

/// The dashboard.
#[utoipa::path(get, path = "/ui", tag = "ui",
    responses((status = 200, content_type = "text/html", body = String)))]
async fn page() -> Response {
    asset("index.html")
}

/// The dashboard.
#[utoipa::path(get, path = "/ui/", tag = "ui",
    responses((status = 200, content_type = "text/html", body = String)))]
async fn page_slash() -> Response {
    asset("index.html")
}

/// One of the dashboard's files.
#[utoipa::path(get, path = "/ui/{file}", tag = "ui",
    params(("file" = String, Path, description = "index.html, app.js or app.css")),
    responses(
        (status = 200, content_type = "text/plain", body = String, description = "the file (text/html, text/javascript or text/css)"),
        (status = 404, body = conclave_types::ErrorBody, description = "no such file"),
    ))]
async fn file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    asset(&file)
}

/// The database-cluster seed's dashboard path: a permanent redirect to `/ui`.
#[utoipa::path(get, path = "/dashboard", tag = "ui",
    responses((status = 308, description = "to /ui", headers(("Location" = String)))))]
async fn dashboard() -> Redirect {
    Redirect::permanent("/ui")
}

/// One embedded file, or a JSON 404 naming the files there are.
fn asset(file: &str) -> Response {
    let (body, kind) = match file {
        "index.html" => (INDEX, "text/html; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => {
            return crate::ApiError::new(
                StatusCode::NOT_FOUND,
                conclave_types::ErrorCode::NotFound,
                format!("the dashboard has no file {file:?}"),
                "open /ui; its files are index.html, app.js and app.css",
            )
            .into_response();
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The files change with the binary: revalidate, never serve a stale dashboard.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The embedded assets' total size in bytes (the dashboard's budget is 300 KB).
pub fn assets_size() -> usize {
    INDEX.len() + APP_JS.len() + APP_CSS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_stay_within_budget_and_reference_each_other() {
        assert!(assets_size() < 300 * 1024, "{} bytes", assets_size());
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/app.css"));
        assert_eq!(asset("nope.js").status(), StatusCode::NOT_FOUND);
        let page = asset("index.html");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
    }
}
