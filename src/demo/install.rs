//! The demo installs its Slack app as a person would: signs in to the dashboard as the admin,
//! opens `/slack/install`, allows the install on the sandbox's authorize page and lands on
//! the callback, so the OAuth tokens the worker uses came through the real install flow.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use reqwest::redirect::Policy;

use crate::config::Settings;

/// In OAuth mode, installs the Slack app through the web server before the worker starts.
pub async fn when_oauth(
    settings: &Settings,
    env: &HashMap<String, String>,
    port: u16,
) -> anyhow::Result<()> {
    if settings.slack.client_id.is_none() {
        return Ok(());
    }
    let admin = &env["DASHBOARD_ADMIN_TOKEN"];
    let said = install_slack(&format!("http://127.0.0.1:{port}"), admin)
        .await
        .context("installing the demo's Slack app through /slack/install")?;
    println!("Slack app installed through /slack/install and the sandbox's authorize page: {said}");
    Ok(())
}

/// A browser that keeps cookies by hand and follows no redirect on its own.
struct Walk {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Walk {
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = request
            .header("cookie", cookie.join("; "))
            .send()
            .await
            .context("the install walk's request failed")?;
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(response)
    }

    async fn follow(&mut self, url: &str) -> anyhow::Result<String> {
        let response = self.send(self.http.get(url)).await?;
        let status = response.status();
        match response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
        {
            Some(next) if status.is_redirection() => Ok(next.to_owned()),
            _ => bail!("{url} answered {status} instead of a redirect"),
        }
    }
}

/// Walks the install through the web server at `web` with the admin token: what the
/// callback page said.
pub async fn install_slack(web: &str, admin_token: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()?;
    let mut walk = Walk {
        http,
        cookies: BTreeMap::new(),
    };
    let login = walk
        .http
        .post(format!("{web}/dashboard/login"))
        .form(&[("name", "demo"), ("token", admin_token)]);
    let signed_in = walk.send(login).await?;
    if !signed_in.status().is_redirection() {
        bail!(
            "signing in to the dashboard answered {}",
            signed_in.status()
        );
    }
    let start = walk.follow(&format!("{web}/slack/install")).await?;
    let authorize = url::Url::parse(&walk.follow(&format!("{web}{start}")).await?)
        .context("the authorize URL")?;
    let page = walk.send(walk.http.get(authorize.clone())).await?;
    if !page.status().is_success() {
        bail!("the authorize page answered {}", page.status());
    }
    let mut allow = authorize.join("authorize/decide")?;
    allow
        .query_pairs_mut()
        .extend_pairs(authorize.query_pairs())
        .append_pair("decision", "allow");
    let callback = walk.follow(allow.as_str()).await?;
    let done = walk.send(walk.http.get(&callback)).await?;
    let status = done.status();
    let body = done.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the install callback answered {status}: {}", text_of(&body));
    }
    Ok(text_of(&body))
}

/// The words of the callback page's first paragraph.
fn text_of(html: &str) -> String {
    let start = html
        .find("<p")
        .and_then(|i| html[i..].find('>').map(|j| i + j + 1))
        .unwrap_or(0);
    let end = html[start..]
        .find("</p>")
        .map(|e| start + e)
        .unwrap_or(html.len());
    let mut out = String::new();
    let mut in_tag = false;
    for c in html[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}
