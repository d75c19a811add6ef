//! The NYC taxi pipelines of the data-engineering course, on Headwater.
//!
//! `taxi demo` runs the whole job offline: it generates TLC-shaped monthly
//! files, serves them on loopback as "the web", and runs `etl-parent-flow`
//! (web → lake → warehouse, one subflow per step and month) on embedded
//! defaults, then prints the rows per month from the warehouse. The flows
//! also run on their own (`taxi etl-web-to-lake -p month=2 …`), and from a
//! deployment (`headwater.yaml` beside this file).

mod pipeline;

use std::process::ExitCode;

use headwater::prelude::*;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("demo") {
        return match pipeline::demo(&args[2..]).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    App::new(flows![
        pipeline::ingest_web_to_postgres,
        pipeline::etl_web_to_lake,
        pipeline::etl_lake_to_warehouse,
        pipeline::etl_parent_flow,
        pipeline::etl_month,
    ])
    .run()
    .await
}
