use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("ROOST_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr);
    // `json`: one object per line, for a log pipeline; a CWMP session's trace id and device are
    // in every line of the session (its span).
    match std::env::var("ROOST_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => logs.init(),
        Ok("json") => logs.json().with_current_span(true).with_span_list(false).init(),
        Ok(other) => {
            eprintln!("error: ROOST_LOG_FORMAT is `text` or `json`, not `{other}`");
            return std::process::ExitCode::FAILURE;
        }
    }
    match roost::cli::run(roost::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
