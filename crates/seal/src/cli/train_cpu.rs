//! `seal train` (`--mode full`, the default): the CPU trainer. Parses nothing itself (see
//! [`super::train::RunArgs`]); draws the progress bar, calls the retrieval check on held-out
//! queries ([`seal::train::dev`]) after checkpoints, and prints where the adapter went. The work
//! is [`seal::train::cpu::run`].

use super::train::{format_secs, read_pairs, RunArgs};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use seal::model::hub;
use seal::model::train::run::Plan;
use seal::train::cpu::{recipe_adamw, run, CpuPlan};
use seal::train::dev::DevRetrieval;
use std::time::{Duration, Instant};

pub fn train_cpu(args: RunArgs) -> anyhow::Result<()> {
    let (Some(pairs_path), Some(out)) = (&args.pairs, &args.out) else {
        bail!("give --pairs FILE (from `seal train data`) and --out DIR");
    };
    let cache = args.cache_dir.clone().unwrap_or_else(hub::default_cache_dir);
    let gguf = hub::resolve_model(&args.model, &cache, !args.quiet)?;
    let mut pairs = read_pairs(pairs_path)?;
    if args.supervised_only {
        pairs.retain(|p| p.kind.is_supervised());
        if pairs.is_empty() {
            bail!(
                "--supervised-only: {} has no query pairs (made from a corpus alone?)",
                pairs_path.display()
            );
        }
    }
    let mut dev = match (&args.dev_queries, &args.dev_dataset, &args.dev_index) {
        (Some(spec), Some(dir), Some(index)) => Some(DevRetrieval::open(
            spec,
            dir,
            &args.dev_split,
            index,
            &gguf,
            Duration::from_secs_f64(args.dev_every_minutes * 60.0),
        )?),
        _ => None,
    };
    let plan = CpuPlan {
        gguf: gguf.clone(),
        model_name: args.model.clone(),
        out: out.clone(),
        layers: args.top_layers,
        run: Plan {
            epochs: args.epochs,
            pairs_per_batch: args.batch_size.unwrap_or(32) as f64,
            adamw: seal::model::train::AdamWSettings {
                weight_decay: args.weight_decay,
                max_grad_norm: Some(args.max_grad_norm),
                ..recipe_adamw(args.lr.unwrap_or(1e-4))
            },
            warmup_fraction: 0.05,
            seed: args.seed,
            checkpoint_every: Duration::from_secs_f64(args.checkpoint_minutes * 60.0),
            time_limit: None,
        },
        max_len: args.max_len,
        resume: args.resume,
        budget: args.budget_minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
    };
    if args.warmup.is_some() {
        bail!(
            "--warmup is for --mode lora; the CPU trainer warms up over the first 5 % of its steps"
        );
    }
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let say = |line: String| if args.quiet { eprintln!("{line}") } else { bar.println(line) };
    let started = Instant::now();
    let total_steps = std::cell::Cell::new(0);
    let last = std::cell::RefCell::new(None);
    let outcome = run(
        &plan,
        &pairs,
        |p| {
            total_steps.set(p.total_steps);
            say(format!(
                "seal: {} pairs ({} too long, dropped) under {} distinct prompts: {} rows an epoch instead of {} tokens \
                 of pairs; training {} of {} layers ({:.1} M parameters), {} steps of ~{} pairs ({} epochs{})",
                p.pairs,
                p.dropped,
                p.trees,
                p.rows_per_epoch,
                p.pair_tokens_per_epoch,
                p.layers.0,
                p.layers.1,
                p.trained_parameters as f64 / 1e6,
                p.total_steps,
                plan.run.pairs_per_batch,
                p.epochs,
                p.probe_rows_per_second.map_or(String::new(), |r| format!(
                    ", fitted to --budget-minutes at the probed {r:.0} rows/s"
                ))
            ));
            bar.set_length(p.total_steps as u64);
        },
        |p| {
            bar.set_position(p.step as u64);
            bar.set_message(format!(
                "loss {:.3} | {:.0} pair tokens/s | eta {}",
                p.smoothed_loss,
                p.pair_tokens_per_second,
                format_secs(p.eta_seconds)
            ));
            *last.borrow_mut() = Some(p.clone());
        },
        |adapter, step| {
            let mut line = format!(
                "step {step}/{}: checkpoint and adapter written ({}); loss {:.4}",
                total_steps.get(),
                format_secs(started.elapsed().as_secs_f64()),
                last.borrow().as_ref().map_or(f64::NAN, |p: &seal::model::train::run::Progress| p.smoothed_loss)
            );
            if let Some(dev) = dev.as_mut().filter(|d| d.due(step == total_steps.get())) {
                let t = Instant::now();
                let ndcg = dev.measure(adapter, step)?;
                line += &format!(
                    "; dev nDCG@10 {ndcg:.4} on {} queries ({:.0} s)",
                    dev.num_queries(),
                    t.elapsed().as_secs_f64()
                );
            }
            say(line);
            Ok(())
        },
    )
    .with_context(|| format!("training on {}", pairs_path.display()))?;
    bar.finish_and_clear();
    let p = last.into_inner().context("no training step ran")?;
    eprintln!(
        "seal: {}/{} steps in {} this session ({} of it training: {:.0} pair tokens/s, {:.0} rows/s), loss {:.4}; adapter in {}{}",
        outcome.steps,
        outcome.total_steps,
        format_secs(outcome.seconds),
        format_secs(outcome.training_seconds),
        p.pair_tokens_per_second,
        p.rows_per_second,
        outcome.smoothed_loss,
        out.display(),
        if outcome.finished {
            format!(" (search with --adapter {})", out.display())
        } else {
            " (stopped at --budget-minutes; continue with --resume)".to_string()
        }
    );
    if let Some(dev) = dev {
        let line: Vec<String> =
            dev.history().iter().map(|(s, n)| format!("step {s}: {n:.4}")).collect();
        eprintln!("seal: dev nDCG@10: {}", line.join(", "));
    }
    Ok(())
}
