//! The `campaign-sync` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    campaign_sync::cli::main()
}
