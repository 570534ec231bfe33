//! The `seal` binary: parses the command line and hands off to the library. Glue only.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
