//! The `batchgraph` command line.

mod alloc;
mod autobatch;
mod bench;
mod cost_check;
mod demo;
mod demo_autobatch;

use batchgraph::{
    calibrate, check_rule, expand_loops, json_from_str, named_to_json, parse_file, to_dot, to_onnx, to_svg,
    values_from_json, BatchReduce, Batcher, CostProfile, DynamicBatch, Error, ExportOptions, Interpreter, Program,
    RuleSet, Run, Scalar, Strategy, Values, MAX_NODES,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use demo::{run_demo, DemoOptions};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "batchgraph",
    version,
    about = "Mini-batching of computational graphs by e-graph rewriting"
)]
struct Cli {
    /// Without a command: the walk-through (`demo`).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Find the batch nobody declared: run groups of same-signature nodes as one batched op where the cost model says it pays.
    Autobatch(autobatch::AutobatchArgs),
    /// Print a program after inlining and CSE, its output shapes and node counts.
    Show {
        /// The .graph file.
        file: PathBuf,
        /// Write a picture of the graph as SVG.
        #[arg(long, value_name = "OUT.svg")]
        svg: Option<PathBuf>,
        /// Write the graph in DOT.
        #[arg(long, value_name = "OUT.dot")]
        dot: Option<PathBuf>,
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a program; with --grad also its gradient, with --tangents its forward-mode tangents.
    Eval(EvalArgs),
    /// Batch a program over a mini-batch; prints the batched program in the language.
    Batch(BatchArgs),
    /// Print the gradient program: the one scalar output, then `grad_<name>` for each name.
    Grad {
        /// The .graph file.
        file: PathBuf,
        /// Names to differentiate with respect to, comma-separated (default: every input and param).
        #[arg(long, value_delimiter = ',')]
        wrt: Option<Vec<String>>,
        /// Write a picture of the gradient program as SVG.
        #[arg(long, value_name = "OUT.svg")]
        svg: Option<PathBuf>,
    },
    /// Print the JVP program: the outputs, then `jvp_<out>` for each; inputs `tangent_<name>` carry the tangents.
    Jvp {
        /// The .graph file.
        file: PathBuf,
        /// Names that get a tangent input, comma-separated (default: every input and param).
        #[arg(long, value_delimiter = ',')]
        tangents: Option<Vec<String>>,
        /// Write a picture of the JVP program as SVG.
        #[arg(long, value_name = "OUT.svg")]
        svg: Option<PathBuf>,
    },
    /// Write a program as an ONNX model (opset 18); with --batch, batch it first.
    Export(ExportArgs),
    /// Measure this machine's interpreter and print its cost profile (JSON); --save keeps it for later commands.
    Calibrate {
        /// Also write it where `--profile saved` (the default) reads it (see `batchgraph calibrate --help`).
        #[arg(long)]
        save: bool,
    },
    /// List the rules (built-in, and those in --rules DIR); with --check, check each for soundness.
    Rules {
        /// A folder of extra *.rules files.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Evaluate both sides of every text rule on random tensors.
        #[arg(long)]
        check: bool,
    },
    /// Time the interpreter on a program, as written or batched over each --size.
    Bench(bench::BenchArgs),
    /// Price and time every plan of each program over a range of batch sizes: the cost model's regret and error.
    CostCheck(cost_check::CostCheckArgs),
    /// Train a program's params on data: the gradient and the optimizer's update as one step program.
    Train(train::TrainArgs),
    /// The gradient noise scale B_simple at given params, from per-example gradients.
    NoiseScale(noise_scale::NoiseScaleArgs),
    /// The walk-through on the seed graph: graphs, costs, gradient checks, timings, pictures.
    Demo {
        /// Folder for the pictures.
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
        /// Shorter measurements.
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Args)]
struct EvalArgs {
    /// The .graph file.
    file: PathBuf,
    /// JSON object with a value for every input and param.
    #[arg(long, value_name = "VALUES.json")]
    inputs: PathBuf,
    /// Also the gradient of the one scalar output w.r.t. every input and param.
    #[arg(long)]
    grad: bool,
    /// JSON object of tangents (missing names are zero); prints "jvp".
    #[arg(long, value_name = "TANGENTS.json")]
    tangents: Option<PathBuf>,
    /// Element type.
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    dtype: Dtype,
    /// Report a NaN or infinity with the op that produced it.
    #[arg(long)]
    check_finite: bool,
    /// Also print "peak_bytes": the most bytes of values held at once.
    #[arg(long)]
    memory: bool,
}

#[derive(Args)]
struct BatchArgs {
    /// The .graph file.
    file: PathBuf,
    /// Batch size B.
    #[arg(long)]
    size: usize,
    /// Inputs to batch over, comma-separated (default: every input).
    #[arg(long, value_delimiter = ',')]
    over: Option<Vec<String>>,
    /// Each output becomes the mean over the batch, the sum, or the stack (none).
    #[arg(long, value_enum, default_value_t = ReduceArg::Mean)]
    reduce: ReduceArg,
    /// Duplicate (unroll), fuse, or let the cost model choose (auto).
    #[arg(long, value_enum, default_value_t = StrategyArg::Auto)]
    strategy: StrategyArg,
    /// Cost profile: saved (the one `calibrate --save` wrote, else cpu), cpu, gpu, or a JSON file.
    #[arg(long, default_value = "saved")]
    profile: String,
    /// A folder of extra *.rules files.
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long, value_name = "REPORT.json")]
    report: Option<PathBuf>,
    /// Write a picture of the batched program.
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
    /// Write the batched program in DOT.
    #[arg(long, value_name = "OUT.dot")]
    dot: Option<PathBuf>,
    /// Write every loop out as B copies of its body (for small B: the textbook picture).
    #[arg(long)]
    expand: bool,
    /// Choose the fastest plan (chunk sizes included) whose predicted peak memory fits:
    /// bytes, or with a unit (64KiB, 10MB, 2GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory: Option<usize>,
    /// Which run to price and to predict the memory of: the gradient (forward and backward) or the forward pass.
    #[arg(long = "for", value_enum, default_value_t = RunArg::Grad)]
    run: RunArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum RunArg {
    Grad,
    Eval,
}

/// A size in bytes: a number, optionally with a unit (KB, MB, GB in powers of
/// 1000; KiB, MiB, GiB in powers of 1024; B).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("`{text}` is not a size (like 65536, 64KiB, 10MB, 2GiB)"));
    }
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        other => return Err(format!("unknown unit `{other}` (use B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (like 65536, 64KiB, 10MB, 2GiB)"))?;
    let bytes = value * scale;
    if !(1.0..1e18).contains(&bytes) {
        return Err(format!(
            "`{text}`: the budget must be at least 1 byte and less than 10^18"
        ));
    }
    Ok(bytes as usize)
}

#[derive(Args)]
struct ExportArgs {
    /// The .graph file.
    file: PathBuf,
    /// Where to write the ONNX model.
    #[arg(long, value_name = "OUT.onnx")]
    onnx: PathBuf,
    /// Element type of the model's values.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Batch the program over B examples first (as `batch`, fused by default).
    #[arg(long, value_name = "B")]
    batch: Option<usize>,
    /// With --batch: inputs to batch over, comma-separated (default: every input).
    #[arg(long, value_delimiter = ',', requires = "batch")]
    over: Option<Vec<String>>,
    /// With --batch: each output becomes the mean over the batch, the sum, or the stack (none).
    #[arg(long, value_enum, default_value_t = ReduceArg::Mean, requires = "batch")]
    reduce: ReduceArg,
    /// With --batch: the batching strategy.
    #[arg(long, value_enum, default_value_t = StrategyArg::Fuse, requires = "batch")]
    strategy: StrategyArg,
    /// With --batch: leave the batch axis symbolic (`B`), so that one file serves every batch size.
    #[arg(long)]
    dynamic_batch: bool,
    /// Write every map loop out as copies of its body first (as `batch --expand`): no ONNX Loop, one batch size.
    #[arg(long)]
    expand: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReduceArg {
    Mean,
    Sum,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    Auto,
    Unroll,
    Fuse,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dtype {
    F64,
    F32,
}

impl From<Dtype> for batchgraph::Dtype {
    fn from(d: Dtype) -> Self {
        match d {
            Dtype::F32 => batchgraph::Dtype::F32,
            Dtype::F64 => batchgraph::Dtype::F64,
        }
    }
}

/// Prints to stdout; a closed pipe (`| head`) ends the process quietly with
/// success, as other command-line tools do; any other write error is an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        write!(stdout, $($arg)*).and_then(|_| stdout.flush()).map_err(stdout_error)?
    }};
}

// After `say!`, which they use.
mod noise_scale;
mod train;

/// The error for a failed write to stdout; exits at once on a closed pipe.
fn stdout_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    Error::Io(format!("stdout: {e}"))
}

/// A node count before CSE, which saturates at `u128::MAX` for deep graphs.
fn tree_count(n: u128) -> String {
    if n == u128::MAX {
        "more than 10^38".to_string()
    } else {
        n.to_string()
    }
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    json_from_str(&text).map_err(|e| Error::Values(format!("{}: invalid JSON: {e}", path.display())))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn shapes_json<'a>(items: impl Iterator<Item = (&'a str, &'a batchgraph::Shape)>) -> Value {
    Value::Object(items.map(|(n, s)| (n.to_string(), json!(s.dims()))).collect())
}

/// Prints the program that `make` builds from the one in `file` (a gradient
/// or JVP program), its output shapes, and its size next to the original's.
fn transform(file: &Path, svg: Option<&Path>, make: impl Fn(&Program) -> Result<Program, Error>) -> Result<(), Error> {
    let program = parse_file(file)?;
    let derived = make(&program)?;
    // The program first: a picture that cannot be drawn (too large) does not lose it.
    say!("{}", derived.to_text());
    for (name, id) in &derived.outputs {
        say!("# output {name}: {}\n", derived.shape(*id));
    }
    say!(
        "# nodes: {} (the program alone: {}, {:.2}x)\n",
        derived.node_count(),
        program.node_count(),
        derived.node_count() as f64 / program.node_count() as f64
    );
    if let Some(path) = svg {
        write(path, &to_svg(&derived).map_err(Error::Io)?)?;
    }
    Ok(())
}

fn show(file: &Path, svg: Option<&Path>, dot: Option<&Path>, as_json: bool) -> Result<(), Error> {
    let program = parse_file(file)?;
    if let Some(path) = dot {
        write(path, &to_dot(&program))?;
    }
    if let Some(path) = svg {
        write(path, &to_svg(&program).map_err(Error::Io)?)?;
    }
    let outputs = program.outputs.iter().map(|(n, id)| (n.as_str(), program.shape(*id)));
    if as_json {
        let report = json!({
            "nodes": program.node_count(),
            // An integer while JSON readers hold it exactly (2^53), else a float.
            "nodes_before_cse": match u64::try_from(program.nodes_before_cse()) {
                Ok(n) if n < 1 << 53 => json!(n),
                _ => json!(program.nodes_before_cse() as f64),
            },
            "inputs": shapes_json(program.inputs.iter().map(|d| (d.name.as_str(), &d.shape))),
            "params": shapes_json(program.params.iter().map(|d| (d.name.as_str(), &d.shape))),
            "outputs": shapes_json(outputs),
        });
        say!("{}\n", serde_json::to_string_pretty(&report).unwrap());
    } else {
        say!("{}", program.to_text());
        for (name, shape) in outputs {
            say!("# output {name}: {shape}\n");
        }
        say!(
            "nodes: {} (before CSE: {})\n",
            program.node_count(),
            tree_count(program.nodes_before_cse())
        );
    }
    Ok(())
}

/// What `eval` is asked for.
struct EvalRequest<'a> {
    values: &'a Value,
    grad: bool,
    tangents: Option<&'a Value>,
    check_finite: bool,
    memory: bool,
}

fn eval<T: Scalar>(program: &Program, request: &EvalRequest) -> Result<Value, Error> {
    let EvalRequest {
        values,
        grad,
        tangents,
        check_finite,
        memory,
    } = *request;
    let values: Values<T> = values_from_json("inputs", values)?;
    let interpreter = Interpreter::new(program).check_finite(check_finite);
    let mut result = Map::new();
    if grad {
        let g = interpreter.gradient(&values)?;
        result.insert("outputs".into(), named_to_json(&g.outputs));
        result.insert("grads".into(), named_to_json(&g.grads));
        if memory {
            result.insert("peak_bytes".into(), g.peak_bytes.into());
        }
    } else {
        let e = interpreter.evaluate(&values)?;
        result.insert("outputs".into(), named_to_json(&e.outputs));
        if memory {
            result.insert("peak_bytes".into(), e.peak_bytes.into());
        }
    }
    if let Some(tangents) = tangents {
        let tangents: Values<T> = values_from_json("tangents", tangents)?;
        let t = interpreter.tangents(&values, &tangents)?;
        result.insert("jvp".into(), named_to_json(&t.jvp));
    }
    Ok(Value::Object(result))
}

/// Where `calibrate --save` writes this machine's profile and `--profile saved`
/// reads it: `$BATCHGRAPH_PROFILE`, else `$XDG_CONFIG_HOME/batchgraph/profile.json`,
/// else `~/.config/batchgraph/profile.json`.
fn saved_profile_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("BATCHGRAPH_PROFILE")
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| d.join("batchgraph/profile.json")))
        .or_else(|| var("HOME").map(|d| d.join(".config/batchgraph/profile.json")))
}

/// The profile named on the command line: `saved` (the calibrated one if it
/// was saved, else `cpu`), `cpu`, `gpu`, or a JSON file.
fn profile(name: &str) -> Result<CostProfile, Error> {
    match name {
        "saved" => match saved_profile_path().filter(|p| p.exists()) {
            Some(path) => profile(&path.to_string_lossy()),
            None => Ok(CostProfile::cpu()),
        },
        "cpu" => Ok(CostProfile::cpu()),
        "gpu" => Ok(CostProfile::gpu()),
        path => {
            let profile: CostProfile = serde_json::from_value(read_json(Path::new(path))?).map_err(|e| {
                // A profile saved before the model gained a term lacks its field.
                let again = match e.to_string().starts_with("missing field") {
                    true => " (saved by an older batchgraph? run `batchgraph calibrate --save` again)",
                    false => "",
                };
                Error::Values(format!("{path}: not a cost profile: {e}{again}"))
            })?;
            profile.validate().map_err(|e| Error::Values(format!("{path}: {e}")))?;
            Ok(profile)
        }
    }
}

fn batch_reduce(reduce: ReduceArg) -> BatchReduce {
    match reduce {
        ReduceArg::Mean => BatchReduce::Mean,
        ReduceArg::Sum => BatchReduce::Sum,
        ReduceArg::None => BatchReduce::None,
    }
}

fn batch_strategy(strategy: StrategyArg) -> Strategy {
    match strategy {
        StrategyArg::Auto => Strategy::Auto,
        StrategyArg::Unroll => Strategy::Unroll,
        StrategyArg::Fuse => Strategy::Fuse,
    }
}

fn batch(args: BatchArgs) -> Result<(), Error> {
    let program = parse_file(&args.file)?;
    let mut rule_set = RuleSet::builtin();
    if let Some(dir) = &args.rules {
        // The user's rules are checked before they can change an answer.
        rule_set = rule_set.with_checked_dir(dir, check_rule)?;
    }
    let mut batcher = Batcher::new(&program)
        .size(args.size)
        .reduce(batch_reduce(args.reduce))
        .strategy(batch_strategy(args.strategy))
        .profile(profile(&args.profile)?)
        .memory_budget(args.memory)
        .price_for(match args.run {
            RunArg::Grad => Run::Grad,
            RunArg::Eval => Run::Eval,
        })
        .rules(rule_set);
    if let Some(over) = args.over {
        batcher = batcher.over(over);
    }
    let mut batched = batcher.run()?;
    if args.expand {
        batched.program = expand_loops(&batched.program, MAX_NODES)?;
    }
    if let Some(path) = &args.report {
        write(path, &serde_json::to_string_pretty(&batched.report).unwrap())?;
    }
    if let Some(path) = &args.dot {
        write(path, &to_dot(&batched.program))?;
    }
    if let Some(path) = &args.svg {
        write(path, &to_svg(&batched.program).map_err(Error::Io)?)?;
    }
    say!("{}", batched.program.to_text());
    Ok(())
}

/// Writes the program (batched first with --batch) as an ONNX model.
fn export(args: ExportArgs) -> Result<(), Error> {
    let program = parse_file(&args.file)?;
    let (program, dynamic_batch) = match args.batch {
        None if args.dynamic_batch => {
            return Err(Error::Unsupported(format!(
                "--dynamic-batch needs --batch B: {} is exported as written, and a program does not say which of its axes is a batch",
                args.file.display()
            )))
        }
        None => (program, None),
        Some(size) => {
            let mut batcher = Batcher::new(&program)
                .size(size)
                .reduce(batch_reduce(args.reduce))
                .strategy(batch_strategy(args.strategy));
            if let Some(over) = &args.over {
                batcher = batcher.over(over.clone());
            }
            let inputs = match &args.over {
                Some(over) => over.clone(),
                None => program.inputs.iter().map(|d| d.name.clone()).collect(),
            };
            let dynamic = args.dynamic_batch.then(|| DynamicBatch {
                inputs,
                reduce: batch_reduce(args.reduce),
            });
            (batcher.run()?.program, dynamic)
        }
    };
    let program = match args.expand {
        true => expand_loops(&program, MAX_NODES)?,
        false => program,
    };
    let options = ExportOptions {
        dtype: match args.dtype {
            Dtype::F32 => batchgraph::Dtype::F32,
            Dtype::F64 => batchgraph::Dtype::F64,
        },
        dynamic_batch,
    };
    let bytes = to_onnx(&program, &options)?;
    std::fs::write(&args.onnx, bytes).map_err(|e| Error::Io(format!("{}: {e}", args.onnx.display())))
}

/// Lists every rule; with `check`, checks each, and fails on an unsound or never-exercised one.
fn rules(dir: Option<&Path>, check: bool) -> Result<(), Error> {
    let mut rule_set = RuleSet::builtin();
    if let Some(dir) = dir {
        rule_set = rule_set.with_dir(dir)?;
    }
    let mut failed = 0;
    for rule in &rule_set.rules {
        let verdict = match (check, check.then(|| check_rule(rule))) {
            (true, Some(Ok(0))) => {
                failed += 1;
                "  [UNCHECKED: no instance of its left side applies]".to_string()
            }
            (true, Some(Ok(n))) => format!("  [sound on {n} instances]"),
            (true, Some(Err(e))) => {
                failed += 1;
                format!("  [UNSOUND: {e}]")
            }
            _ => String::new(),
        };
        say!("{:<28} {}\n    # {}{verdict}\n", rule.name, rule.origin, rule.comment);
    }
    if failed > 0 {
        return Err(Error::Unsupported(format!("{failed} rule(s) are unsound or unchecked")));
    }
    Ok(())
}

fn eval_command(args: EvalArgs) -> Result<(), Error> {
    let program = parse_file(&args.file)?;
    let values = read_json(&args.inputs)?;
    let tangents = args.tangents.as_deref().map(read_json).transpose()?;
    let request = EvalRequest {
        values: &values,
        grad: args.grad,
        tangents: tangents.as_ref(),
        check_finite: args.check_finite,
        memory: args.memory,
    };
    let result = match args.dtype {
        Dtype::F64 => eval::<f64>(&program, &request)?,
        Dtype::F32 => eval::<f32>(&program, &request)?,
    };
    say!("{}\n", serde_json::to_string(&result).unwrap());
    Ok(())
}

fn run(cli: Cli) -> Result<(), Error> {
    let command = cli.command.unwrap_or(Command::Demo {
        out: PathBuf::from("out/demo"),
        quick: false,
    });
    match command {
        Command::Demo { out, quick } => {
            let profile = profile("saved")?;
            run_demo(&DemoOptions { out, quick, profile }, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Batch(args) => batch(args),
        Command::Grad { file, wrt, svg } => transform(&file, svg.as_deref(), |p| batchgraph::grad(p, wrt.as_deref())),
        Command::Jvp { file, tangents, svg } => {
            transform(&file, svg.as_deref(), |p| batchgraph::jvp(p, tangents.as_deref()))
        }
        Command::Export(args) => export(args),
        Command::Rules { rules: dir, check } => rules(dir.as_deref(), check),
        Command::Calibrate { save } => {
            let profile = calibrate()?;
            let json = serde_json::to_string_pretty(&profile).expect("a profile serializes");
            say!("{json}\n");
            if save {
                let path = saved_profile_path()
                    .ok_or_else(|| Error::Unsupported("no place to save it: set BATCHGRAPH_PROFILE or HOME".into()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
                }
                std::fs::write(&path, json + "\n").map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
                eprintln!("calibrate: saved to {}", path.display());
            }
            Ok(())
        }
        Command::Show { file, svg, dot, json } => show(&file, svg.as_deref(), dot.as_deref(), json),
        Command::Eval(args) => eval_command(args),
        Command::Bench(args) => bench::bench(args),
        Command::CostCheck(args) => cost_check::cost_check_command(args),
        Command::Autobatch(args) => autobatch::autobatch_command(args),
        Command::Train(args) => train::train_command(args),
        Command::NoiseScale(args) => noise_scale::noise_scale_command(args),
    }
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
