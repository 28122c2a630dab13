//! The Heroku files: `app.json` against the app.json schema as Heroku documents it
//! (devcenter "app.json Schema"), and consistent with the Procfile, `RustConfig` and the
//! settings the service reads.

use std::collections::BTreeSet;

use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path)
}

/// Heroku's documented dyno sizes.
const SIZES: &[&str] = &[
    "eco",
    "basic",
    "standard-1x",
    "standard-2x",
    "performance-m",
    "performance-l",
    "performance-l-ram",
    "performance-xl",
    "performance-2xl",
    "private-s",
    "private-m",
    "private-l",
    "shield-s",
    "shield-m",
    "shield-l",
];
const TOP_LEVEL: &[&str] = &[
    "name",
    "description",
    "keywords",
    "website",
    "repository",
    "logo",
    "success_url",
    "scripts",
    "env",
    "formation",
    "image",
    "addons",
    "buildpacks",
    "environments",
    "stack",
];

fn schema_problems(app: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(top) = app.as_object() else {
        return vec!["app.json is not an object".to_owned()];
    };
    for key in top.keys().filter(|k| !TOP_LEVEL.contains(&k.as_str())) {
        problems.push(format!("unknown top-level key {key}"));
    }
    let name_ok = app["name"]
        .as_str()
        .is_some_and(|n| (3..=30).contains(&n.len()));
    let description_ok = app["description"].as_str().is_some_and(|d| d.len() <= 140);
    if !name_ok || !description_ok {
        problems.push("name must be 3-30 characters and description at most 140".to_owned());
    }
    for (process, f) in app["formation"].as_object().into_iter().flatten() {
        let quantity_ok = f["quantity"].as_u64().is_some();
        let size_ok = f["size"].as_str().is_some_and(|s| SIZES.contains(&s));
        if !quantity_ok || !size_ok {
            problems.push(format!(
                "formation.{process} needs an integer quantity and a known size"
            ));
        }
    }
    for addon in app["addons"].as_array().into_iter().flatten() {
        let ok = addon.is_string() || addon["plan"].is_string();
        if !ok {
            problems.push(format!(
                "addon {addon} is neither a plan name nor {{plan, as?, options?}}"
            ));
        }
    }
    for b in app["buildpacks"].as_array().into_iter().flatten() {
        if !b["url"].is_string() {
            problems.push(format!("buildpack {b} has no url"));
        }
    }
    for (name, v) in app["env"].as_object().into_iter().flatten() {
        let ok = v.is_string()
            || (v.is_object()
                && v.as_object()
                    .into_iter()
                    .flatten()
                    .all(|(k, x)| match k.as_str() {
                        "description" | "value" => x.is_string(),
                        "required" => x.is_boolean(),
                        "generator" => x == "secret",
                        _ => false,
                    }));
        if !ok {
            problems.push(format!(
                "env.{name} must be a string or {{description, value, required, generator: secret}}"
            ));
        }
    }
    problems
}

#[test]
fn app_json_follows_herokus_schema_and_matches_the_procfile_and_the_settings() {
    let app: Value = serde_json::from_str(&read("app.json")).expect("app.json is JSON");
    assert_eq!(schema_problems(&app), Vec::<String>::new());
    let procfile: BTreeSet<String> = read("Procfile")
        .lines()
        .filter_map(|l| l.split_once(':').map(|(p, _)| p.trim().to_owned()))
        .filter(|p| p != "release")
        .collect();
    let formation: BTreeSet<String> = app["formation"]
        .as_object()
        .expect("formation")
        .keys()
        .cloned()
        .collect();
    assert_eq!(formation, procfile, "a dyno for every Procfile process");
    // APP_ENV picks the files before any setting is read.
    let known: BTreeSet<&str> = campaign_sync::config::spec::SETTINGS
        .iter()
        .map(|s| s.env)
        .chain(["APP_ENV"])
        .collect();
    for name in app["env"].as_object().expect("env").keys() {
        assert!(
            known.contains(name.as_str()),
            "{name} is a setting the service reads"
        );
    }
    for secret in ["API_TOKEN", "METRICS_TOKEN", "MAILJET_WEBHOOK_PASSWORD"] {
        assert_eq!(
            app["env"][secret]["generator"], "secret",
            "{secret} is generated"
        );
    }
    let addons: Vec<&str> = app["addons"]
        .as_array()
        .expect("addons")
        .iter()
        .filter_map(|a| a["plan"].as_str())
        .collect();
    assert_eq!(addons, ["heroku-postgresql", "heroku-redis"]);
}

#[test]
fn the_buildpack_pins_the_toolchain_and_builds_from_the_lock_file() {
    let rust_config = read("RustConfig");
    let toolchain = read("rust-toolchain.toml");
    let version = rust_config
        .lines()
        .find_map(|l| l.strip_prefix("VERSION="))
        .expect("VERSION in RustConfig");
    assert!(
        toolchain.contains(&format!("channel = \"{version}\"")),
        "RustConfig and rust-toolchain.toml name one toolchain"
    );
    assert!(rust_config.contains("RUST_CARGO_BUILD_FLAGS=\"--release --locked\""));
    assert!(
        !std::path::Path::new(&format!("{}/rust-toolchain", env!("CARGO_MANIFEST_DIR"))).exists(),
        "rustup refuses rust-toolchain next to rust-toolchain.toml"
    );
}

#[test]
fn the_schema_check_itself_refuses_what_heroku_refuses() {
    let bad = serde_json::json!({ "name": "x", "formation": { "web": { "quantity": "one", "size": "huge" } },
        "env": { "A": { "generator": "uuid" } }, "addons": [7], "dynos": 1 });
    assert_eq!(
        schema_problems(&bad).len(),
        5,
        "{:?}",
        schema_problems(&bad)
    );
}
