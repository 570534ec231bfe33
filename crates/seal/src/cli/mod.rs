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
            eprint!("{}", error_lines(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, one a line (`error: …`, then `  caused by: …`), each said once:
/// `seal::Error` prints its source after its own message and also reports it as its source, so
/// a message that ends with the next cause's text is cut there.
fn error_lines(error: &anyhow::Error) -> String {
    let texts: Vec<String> = error.chain().map(ToString::to_string).collect();
    let mut out = String::new();
    for (index, text) in texts.iter().enumerate() {
        let own = match texts.get(index + 1) {
            Some(next) => text
                .strip_suffix(next.as_str())
                .map_or(text.as_str(), |head| head.trim_end().trim_end_matches(':').trim_end()),
            None => text.as_str(),
        };
        if own.is_empty() {
            continue;
        }
        let lead = if out.is_empty() { "error: " } else { "  caused by: " };
        out.push_str(&format!("{lead}{own}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_lines;

    #[test]
    fn each_cause_is_printed_once_on_its_own_line() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let inner =
            seal::Error::new(seal::ErrorKind::Io, "cannot read the list `x`").with_source(io);
        let error = anyhow::Error::new(inner).context("cannot use --queries");
        assert_eq!(
            error_lines(&error),
            "error: cannot use --queries\n  caused by: cannot read the list `x`\n  caused by: \
             No such file or directory\n"
        );
        assert_eq!(error_lines(&anyhow::anyhow!("plain")), "error: plain\n");
    }
}
