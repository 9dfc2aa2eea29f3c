//! `chat-bench` binary: parses the command line, runs the scenario, prints the report.

use std::io::Write;
use std::process::ExitCode;

use chat_bench::cli::Cli;
use chat_bench::scenario;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.to_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chat-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match runtime.block_on(scenario::run(&config)) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_to_stdout = cli.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if json_to_stdout {
        eprint!("{}", result.table());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", result.to_json());
    } else {
        print!("{}", result.table());
        if let Some(path) = &cli.json
            && let Err(e) = std::fs::write(path, result.to_json() + "\n")
        {
            eprintln!("chat-bench: --json {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
