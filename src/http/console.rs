//! The web console for marketing operations: one page of HTML, CSS and JavaScript, embedded in the binary
//! and served on the API port at `/ui/`. It reads the `/v1` API like any client (with the bearer token
//! when one is set) and changes nothing.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// `GET /`: the console.
pub async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// `GET /ui/`.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/console.js`.
pub async fn script() -> Response {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /ui/console.css`.
pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    // The files change with the binary only; a browser revalidates them on every load.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
