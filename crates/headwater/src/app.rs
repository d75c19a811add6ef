//! Running flows from the command line: the `main` of a flow program.
//!
//! ```text
//! my-flows [FLOW] [-p NAME=VALUE]... [--params JSON] [--params-file PATH]
//! my-flows --list
//! my-flows --schema [FLOW]
//! ```
//! Parameters are checked against the flow's types before any run is
//! created; a bad one exits with status 2 and names the field.

use std::cell::Cell;
use std::process::ExitCode;

use headwater_core::StateType;
use serde_json::{Map, Value};

use crate::context::FINAL_STATE;
use crate::handle::FlowHandle;

/// The command-line entry point of a program that defines flows.
pub struct App {
    flows: Vec<FlowHandle>,
}

struct Invocation {
    serve: Option<crate::serve::ServeOptions>,
    flow: Option<String>,
    params: Map<String, Value>,
    list: bool,
    schema: bool,
    check: bool,
    help: bool,
}

impl App {
    pub fn new(flows: Vec<FlowHandle>) -> App {
        App { flows }
    }

    /// Parses the process arguments, runs the chosen flow, and returns the
    /// exit status: 0 completed, 1 failed, 2 refused input, 130 cancelled.
    pub async fn run(self) -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        self.run_with_args(&args).await
    }

    pub async fn run_with_args(self, args: &[String]) -> ExitCode {
        let inv = match parse_args(args) {
            Ok(inv) => inv,
            Err(msg) => {
                eprintln!("error: {msg}\n\n{}", self.usage());
                return ExitCode::from(2);
            }
        };
        if inv.help {
            println!("{}", self.usage());
            return ExitCode::SUCCESS;
        }
        if inv.list {
            for f in &self.flows {
                println!("{}\t{}", f.name(), f.description().unwrap_or(""));
            }
            return ExitCode::SUCCESS;
        }
        let flow = match self.pick(inv.flow.as_deref()) {
            Ok(f) => f,
            Err(msg) => {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
        };
        if inv.schema {
            println!("{}", serde_json::to_string_pretty(&flow.parameter_schema()).unwrap_or_default());
            return ExitCode::SUCCESS;
        }
        if let Some(opts) = inv.serve {
            let params = Value::Object(inv.params);
            let chosen = flow.name();
            let mut flows = self.flows;
            let index = flows.iter().position(|f| f.name() == chosen).expect("picked from the list");
            return match crate::serve::serve(flows.swap_remove(index), params, opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        if inv.check {
            return match flow.check_json(Value::Object(inv.params)) {
                Ok(()) => {
                    println!("parameters are valid for flow '{}'", flow.name());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        let outcome = FINAL_STATE
            .scope(Cell::new(None), async {
                let r = flow.run_json(Value::Object(inv.params)).await;
                (r, FINAL_STATE.with(Cell::get))
            })
            .await;
        match outcome {
            (Err(e), _) => {
                eprintln!("error: flow '{}' was not started: {e}", flow.name());
                ExitCode::from(2)
            }
            (Ok(Ok(())), _) => ExitCode::SUCCESS,
            (Ok(Err(msg)), state) => {
                eprintln!("error: flow '{}' failed: {msg}", flow.name());
                match state {
                    Some(StateType::Cancelled) => ExitCode::from(130),
                    _ => ExitCode::FAILURE,
                }
            }
        }
    }

    fn pick(&self, name: Option<&str>) -> Result<&FlowHandle, String> {
        let names = || self.flows.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ");
        match name {
            Some(n) => self
                .flows
                .iter()
                .find(|f| f.name() == n)
                .ok_or_else(|| format!("no flow named '{n}' in this program (flows: {})", names())),
            None if self.flows.len() == 1 => Ok(&self.flows[0]),
            None => Err(format!("name the flow to run (flows: {})", names())),
        }
    }

    fn usage(&self) -> String {
        let prog = std::env::args().next().unwrap_or_else(|| "flows".into());
        let prog = prog.rsplit('/').next().unwrap_or("flows").to_string();
        let mut s = format!(
            "usage: {prog} [FLOW] [-p NAME=VALUE]... [--params JSON] [--params-file PATH]\n       \
             {prog} --list | --schema [FLOW] | --check [FLOW] [-p …]\n       \
             {prog} serve FLOW [--cron EXPR | --interval 1h] [--timezone TZ] [--name NAME] [--limit N] [-p …]\n\n\
             -p NAME=VALUE      one parameter; VALUE is read as JSON if it parses, else as text\n\
             --params JSON      parameters as a JSON object\n\
             --params-file PATH parameters from a JSON file\n\nflows:\n"
        );
        for f in &self.flows {
            s.push_str(&format!("  {:<28} {}\n", f.name(), f.description().unwrap_or("")));
        }
        s
    }
}

fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut inv = Invocation {
        serve: None,
        flow: None,
        params: Map::new(),
        list: false,
        schema: false,
        check: false,
        help: false,
    };
    let mut args = args;
    if args.first().map(String::as_str) == Some("serve") {
        inv.serve = Some(crate::serve::ServeOptions::default());
        args = &args[1..];
    }
    let mut explicit = Map::new();
    let mut it = args.iter();
    let value_of = |flag: &str, v: Option<&String>| v.cloned().ok_or_else(|| format!("{flag} needs a value"));
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => inv.help = true,
            "--list" => inv.list = true,
            "--schema" => inv.schema = true,
            "--check" => inv.check = true,
            "--cron" | "--interval" | "--timezone" | "--name" | "--limit" => {
                let v = value_of(arg, it.next())?;
                let Some(s) = inv.serve.as_mut() else { return Err(format!("{arg} goes with `serve`")) };
                match arg.as_str() {
                    "--cron" => s.cron = Some(v),
                    "--interval" => s.interval = Some(v),
                    "--timezone" => s.timezone = Some(v),
                    "--name" => s.name = Some(v),
                    _ => s.limit = Some(v.parse().map_err(|_| format!("--limit takes a number, got '{v}'"))?),
                }
            }
            "-p" | "--param" => {
                let kv = value_of(arg, it.next())?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("-p takes NAME=VALUE, got '{kv}'"))?;
                let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                explicit.insert(k.trim().to_string(), value);
            }
            "--params" => {
                let text = value_of(arg, it.next())?;
                merge_object(&mut inv.params, &text, "--params")?;
            }
            "--params-file" => {
                let path = value_of(arg, it.next())?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
                merge_object(&mut inv.params, &text, &path)?;
            }
            other if other.starts_with('-') => return Err(format!("unknown option '{other}'")),
            other if inv.flow.is_none() => inv.flow = Some(other.to_string()),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    // Single -p values win over the JSON objects.
    inv.params.extend(explicit);
    Ok(inv)
}

fn merge_object(into: &mut Map<String, Value>, text: &str, origin: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => {
            into.extend(m);
            Ok(())
        }
        Ok(_) => Err(format!("{origin} must be a JSON object such as {{\"month\": 1}}")),
        Err(e) => Err(format!("{origin} is not valid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn params_merge_with_single_values_winning() {
        let inv = parse_args(&args(&[
            "etl",
            "--params",
            r#"{"month": 1, "color": "green"}"#,
            "-p",
            "month=3",
            "-p",
            "color=yellow",
        ]))
        .unwrap();
        assert_eq!(inv.flow.as_deref(), Some("etl"));
        assert_eq!(inv.params["month"], 3);
        assert_eq!(inv.params["color"], "yellow");
        let inv = parse_args(&args(&["-p", "months=[1,2,3]"])).unwrap();
        assert_eq!(inv.params["months"], serde_json::json!([1, 2, 3]));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert_eq!(parse_args(&args(&["-p", "month"])).err().unwrap(), "-p takes NAME=VALUE, got 'month'");
        assert!(parse_args(&args(&["--params", "[1]"])).err().unwrap().contains("must be a JSON object"));
        assert!(parse_args(&args(&["--params", "{"])).err().unwrap().contains("not valid JSON"));
        assert_eq!(parse_args(&args(&["--frobnicate"])).err().unwrap(), "unknown option '--frobnicate'");
        assert_eq!(parse_args(&args(&["-p"])).err().unwrap(), "-p needs a value");
    }
}
