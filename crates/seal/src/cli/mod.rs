//! The command line (the only code that knows clap): one file per subcommand.

mod eval;
mod index;
mod model;
mod progress;
mod search;
mod serve;
mod train;
mod train_candle;
mod train_cpu;

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
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Search an index (or the bundled sample corpus) for a query.
    Search(search::SearchArgs),
    /// Build an index from a corpus file.
    Index(index::IndexArgs),
    /// Obtain, list and inspect language models (GGUF files).
    Model(model::ModelArgs),
    /// Evaluate a retrieval system on a BEIR-layout dataset.
    Eval(eval::EvalArgs),
    /// Make training pairs (`seal train data`) and fine-tune the model on them.
    Train(train::TrainArgs),
    /// Serve an index over HTTP: a JSON API and a search page.
    Serve(serve::ServeArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Search(args) => search::run(args),
        Command::Index(args) => index::run(args),
        Command::Model(args) => model::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Train(args) => train::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
