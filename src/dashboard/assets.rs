//! The stylesheet and script, embedded in the binary and served with a long cache lifetime;
//! their paths carry a digest of their content, so a new build is fetched at once.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");
const CACHE: &str = "public, max-age=31536000, immutable";

fn versioned(name: &str, content: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, content.as_bytes());
    let tag = hex::encode(&digest.as_ref()[..6]);
    format!("/dashboard/assets/{tag}/{name}")
}

/// Where the stylesheet is served.
pub static CSS_PATH: LazyLock<String> = LazyLock::new(|| versioned("dashboard.css", CSS));
/// Where the script is served.
pub static JS_PATH: LazyLock<String> = LazyLock::new(|| versioned("dashboard.js", JS));

/// `GET /dashboard/assets/{tag}/dashboard.css`.
pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        CSS,
    )
}

/// `GET /dashboard/assets/{tag}/dashboard.js`.
pub async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        JS,
    )
}
