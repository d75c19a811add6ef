use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    headwater_cli::run_from(std::env::args_os()).await
}
