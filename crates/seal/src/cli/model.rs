//! `seal model`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct ModelArgs {}

pub fn run(_args: ModelArgs) -> anyhow::Result<()> {
    anyhow::bail!("`seal model` is not implemented yet")
}
