//! Schemathesis (PyPI) against the running service with every check: the OpenAPI document must
//! say exactly what the server does. `scripts/services.sh` installs it.

use crate::helpers::spawn_app;

/// Examples per operation (the coverage and stateful phases add their own cases).
const EXAMPLES: &str = "30";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_with_every_check_finds_nothing() {
    let app = spawn_app().await;
    // The document's example request names these, so the examples phase reaches the send path
    // (and, through the document's link, the reading of an accepted request).
    sqlx::query("INSERT INTO email_templates (id, name) VALUES (4242, 'Spring')")
        .execute(&app.db)
        .await
        .expect("template");
    let token = app.env["API_TOKEN"].clone();
    let put = app
        .client
        .put(app.url("/api/campaigns/spring-launch"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Spring launch", "status": "active"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/schemathesis.toml"
    );
    let schema = app.url("/api/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        // `python3 -m schemathesis.cli` is `st`, found with the python3 pip installed it for.
        std::process::Command::new("python3")
            .args([
                "-m",
                "schemathesis.cli",
                "--config-file",
                config,
                "run",
                &schema,
            ])
            .args(["--checks", "all"])
            .args(["--max-examples", EXAMPLES, "--no-color"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .output()
            .expect("python3 with schemathesis (scripts/services.sh installs it)")
    })
    .await
    .expect("join");
    let said = String::from_utf8_lossy(&out.stdout);
    let summary = said
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains("Tested: 28"), "{summary}");
    assert!(summary.contains("passed"), "{summary}");
}
