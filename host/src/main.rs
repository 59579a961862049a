//! The `ward` binary: parse the command line, hand over to the library, report errors.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = ward::cli::Cli::parse();
    ward::cli::init_logging(cli.verbose);
    match ward::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ward: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
