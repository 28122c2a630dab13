//! The HTML document around every page: the stylesheet, the script, the viewport.

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
