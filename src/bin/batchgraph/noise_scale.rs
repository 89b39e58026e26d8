//! `batchgraph noise-scale`: the gradient noise scale B_simple of a
//! program's loss at given params, from per-example gradients.

use crate::stdout_error;
use batchgraph::parse_file;
use batchgraph::train::{loss_program, noise_scale, read_params, Dataset};
use batchgraph::Error;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `batchgraph noise-scale`.
#[derive(Args)]
pub struct NoiseScaleArgs {
    /// The .graph file: the loss of one example.
    file: PathBuf,
    /// The data (.npz or .csv, as for `train`).
    #[arg(long, value_name = "DATA")]
    data: PathBuf,
    /// The params (.npz, as `train` writes them, or .json in the values format).
    #[arg(long, value_name = "PARAMS")]
    params: PathBuf,
    /// B_big of the two-batch-size estimator (and the examples computed at once).
    #[arg(long, value_name = "B", default_value_t = 64)]
    batch: usize,
    /// The output that is the loss (default: the only scalar output).
    #[arg(long, value_name = "NAME")]
    loss: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `noise-scale`.
pub fn noise_scale_command(args: NoiseScaleArgs) -> Result<(), Error> {
    let program = parse_file(&args.file)?;
    let (model, _) = loss_program(&program, args.loss.as_deref())?;
    let data = Dataset::load(&model, &args.data)?;
    let params = read_params(&model, &args.params)?;
    if args.batch < 2 {
        return Err(Error::Unsupported(
            "--batch must be at least 2 (B_big of the estimator)".into(),
        ));
    }
    let scale = noise_scale(&program, args.loss.as_deref(), &params, &data, args.batch)?;
    if args.json {
        say!("{}\n", serde_json::to_string_pretty(&scale).expect("JSON"));
        return Ok(());
    }
    say!(
        "over all {} examples: B_simple = tr(Sigma) / |G|^2 = {:.6e} / {:.6e} = {:.1}\n",
        scale.examples,
        scale.tr_sigma,
        scale.g_norm2,
        scale.b_simple
    );
    match &scale.two_batch {
        Some(t) => say!(
            "unbiased (B_small = 1, B_big = {}, {} batches): |G|^2 = {:.6e}, tr(Sigma) = {:.6e}, B_simple = {:.1} ± {:.1} (standard error)\n",
            t.b_big,
            t.batches,
            t.g_norm2,
            t.tr_sigma,
            t.b_simple,
            t.standard_error
        ),
        None => say!("(fewer than two whole batches of {}: no two-batch estimate)\n", args.batch),
    }
    Ok(())
}
