//! `seal eval`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct EvalArgs {}

pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`seal eval` is not implemented yet")
}
