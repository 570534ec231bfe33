//! The command line (the only code that knows clap): one file per subcommand.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// SEAL: a search engine where a language model writes the search.
#[derive(Parser, Debug)]
#[command(name = "seal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {};
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
