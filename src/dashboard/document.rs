//! The HTML document around every page: the stylesheet, the script, the viewport.

use axum::http::{HeaderMap, header};
use maud::{DOCTYPE, Markup, html};

/// A document with the stylesheet and script, around `body`.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · campaign-sync" }
                link rel="stylesheet" href=(*super::assets::CSS_PATH);
                script src=(*super::assets::JS_PATH) defer {}
            }
            body { (body) }
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, if it is there.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}
