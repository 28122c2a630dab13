//! The short form of `campaign-sync chaos`: the binary as separate processes (web, three
//! workers, the sandbox, its own Redis and PostgreSQL) under kill -9, a PostgreSQL restart,
//! a Redis that loses everything, lost and dropped Send answers and poison input, for both
//! Mailjet adapters. The harness exits 0 only if every invariant held.

use std::process::Command;

#[test]
fn the_chaos_command_finds_every_invariant_held_under_faults_for_both_adapters() {
    let dir = std::env::temp_dir().join(format!("cs-chaos-{}", uuid::Uuid::new_v4().simple()));
    let out = Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .args([
            "chaos",
            "--seed",
            "7",
            "--duration",
            "20s",
            "--recipients",
            "500",
            "--workers",
            "3",
            "--scenarios",
            "kill-workers,postgres-restart,redis-wipe,lost-answers,poison",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .expect("run chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap_or_default();
    assert!(
        out.status.success(),
        "invariants failed:\n{stdout}\n{}\n(logs in {})",
        String::from_utf8_lossy(&out.stderr),
        dir.display()
    );
    for line in [
        "recipients accepted by Mailjet exactly once",
        "schedule ticks run twice",
        "every worker took jobs after the faults",
    ] {
        assert!(report.contains(line), "{line} is reported:\n{report}");
    }
    assert!(!report.contains("FAIL"), "{report}");
    assert!(stdout.contains("every invariant held"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
