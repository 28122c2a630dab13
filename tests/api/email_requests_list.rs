//! Listing email requests (API and CLI) and reading one from the command line.

use serde_json::Value;

use crate::email::{app, post, recipients, request, sandbox};
use crate::helpers::TestApp;

async fn list(app: &TestApp, query: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(&format!("/api/email-requests{query}")))
        .bearer_auth(&app.env["API_TOKEN"])
        .send()
        .await
        .expect("get");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn requests_are_listed_newest_first_by_page_and_filter_and_shown_by_the_cli() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, body) = post(
            &app,
            Some(&format!("list-{i}")),
            &request(recipients(2, &format!("d{i}.example.com"))),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let (status, first) = list(&app, "?limit=2").await;
    assert_eq!(status, 200, "{first}");
    let got: Vec<&str> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let next = first["nextBefore"].as_str().expect("a next page");
    let (_, second) = list(&app, &format!("?limit=2&before={next}")).await;
    assert_eq!(second["items"][0]["id"], ids[0].as_str());
    assert!(second["nextBefore"].is_null(), "{second}");
    let (_, by_campaign) = list(&app, "?campaignId=spring&status=accepted").await;
    assert_eq!(
        by_campaign["items"].as_array().map(Vec::len),
        Some(3),
        "{by_campaign}"
    );
    let (_, none) = list(&app, "?campaignId=other").await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    for bad in [
        "?limit=0",
        "?limit=201",
        "?status=done",
        "?before=x",
        "?campaignId=a%20b",
        "?sort=id",
    ] {
        let (status, body) = list(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .env_clear()
        .envs(&app.env)
        .args(["requests", "show", &ids[0]])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&ids[0]) && text.contains("recipients 2: ") && text.contains("pending 2"),
        "{text}"
    );
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .env_clear()
        .envs(&app.env)
        .args(["requests", "list", "--campaign", "spring"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(ids.iter().all(|id| text.contains(id.as_str())), "{text}");
}
