//! Rewrite rules: text rules from `rules/*.rules` (egg patterns with optional
//! conditions on the shape analysis), plus the few named Rust appliers for
//! rules that need arithmetic on shapes or axes.
//!
//! A rule file is a list of rules, each one line
//! `NAME: LHS => RHS [if CONDITION, ...]` directly below a `#` comment line
//! that states the identity. Conditions: `mapped(?a)`, `unmapped(?a)`,
//! `rank(?a) OP N` and `rank(?a) OP rank(?b)` with OP one of
//! `== != < <= > >=`.

use crate::analysis::{Graph, ShapeAnalysis};
use crate::error::{Error, Result};
use crate::language::{Num, Op};
use egg::{Applier, Condition, ConditionalApplier, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};
use std::path::Path;

/// The rule files shipped with the crate, compiled in.
pub const BUILTIN_RULE_FILES: [(&str, &str); 2] = [
    ("rules/batching.rules", include_str!("../rules/batching.rules")),
    ("rules/algebra.rules", include_str!("../rules/algebra.rules")),
];

/// The named Rust appliers, for rules that cannot be patterns.
pub const RUST_APPLIERS: [(&str, &str); 2] = [
    (
        "broadcast-align",
        "vmap of + - * / whose mapped operand has the lower rank: insert axes after the batch axis so numpy broadcasting lines up",
    ),
    ("axis-shift", "vmap of sum/mean/max(e, k) and expand(e, k): the same op on axis k + 1"),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Compare {
    fn holds(self, a: usize, b: usize) -> bool {
        match self {
            Compare::Eq => a == b,
            Compare::Ne => a != b,
            Compare::Lt => a < b,
            Compare::Le => a <= b,
            Compare::Gt => a > b,
            Compare::Ge => a >= b,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Test {
    Mapped(Var),
    Unmapped(Var),
    RankConst(Var, Compare, usize),
    RankRank(Var, Compare, Var),
}

/// The conditions of a text rule, all of which must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Conditions(Vec<Test>);

impl Condition<Op, ShapeAnalysis> for Conditions {
    fn check(&self, egraph: &mut Graph, _eclass: Id, subst: &Subst) -> bool {
        let data = |v: &Var| &egraph[subst[*v]].data;
        self.0.iter().all(|t| match t {
            Test::Mapped(v) => data(v).mapped,
            Test::Unmapped(v) => !data(v).mapped,
            Test::RankConst(v, c, n) => c.holds(data(v).shape.rank(), *n),
            Test::RankRank(v, c, w) => c.holds(data(v).shape.rank(), data(w).shape.rank()),
        })
    }
}

/// One text rule as written, kept for the soundness checker and for listing.
#[derive(Clone, Debug)]
pub struct TextRule {
    /// The rule's name.
    pub name: String,
    /// Its comment: the identity it states.
    pub comment: String,
    /// Left-hand side.
    pub lhs: Pattern<Op>,
    /// Right-hand side.
    pub rhs: Pattern<Op>,
    /// Conditions on the left-hand side's variables.
    pub conditions: Conditions,
    /// `file:line` where it was written.
    pub origin: String,
}

impl TextRule {
    /// Whether the conditions hold for variables of the given (mapped, rank).
    pub fn admits(&self, var: &dyn Fn(Var) -> (bool, usize)) -> bool {
        self.conditions.0.iter().all(|t| match t {
            Test::Mapped(v) => var(*v).0,
            Test::Unmapped(v) => !var(*v).0,
            Test::RankConst(v, c, n) => c.holds(var(*v).1, *n),
            Test::RankRank(v, c, w) => c.holds(var(*v).1, var(*w).1),
        })
    }
}

fn parse_var(s: &str) -> std::result::Result<Var, String> {
    s.trim()
        .parse::<Var>()
        .map_err(|_| format!("`{s}` is not a pattern variable like ?a"))
}

fn parse_test(text: &str) -> std::result::Result<Test, String> {
    let text = text.trim();
    let inner = |prefix: &str| text.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
    if let Some(v) = inner("mapped(") {
        return Ok(Test::Mapped(parse_var(v)?));
    }
    if let Some(v) = inner("unmapped(") {
        return Ok(Test::Unmapped(parse_var(v)?));
    }
    for (symbol, compare) in [
        ("==", Compare::Eq),
        ("!=", Compare::Ne),
        ("<=", Compare::Le),
        (">=", Compare::Ge),
        ("<", Compare::Lt),
        (">", Compare::Gt),
    ] {
        if let Some((left, right)) = text.split_once(symbol) {
            let rank_of = |s: &str| {
                s.trim()
                    .strip_prefix("rank(")
                    .and_then(|r| r.strip_suffix(')'))
                    .map(parse_var)
            };
            let v = rank_of(left).ok_or_else(|| format!("expected rank(?v) before {symbol} in `{text}`"))??;
            return match rank_of(right) {
                Some(w) => Ok(Test::RankRank(v, compare, w?)),
                None => right
                    .trim()
                    .parse::<usize>()
                    .map(|n| Test::RankConst(v, compare, n))
                    .map_err(|_| format!("expected a number or rank(?v) after {symbol} in `{text}`")),
            };
        }
    }
    Err(format!(
        "unknown condition `{text}` (expected mapped(?v), unmapped(?v) or rank(?v) OP ...)"
    ))
}

/// Parses one rule file. Every problem names the file, line and rule.
pub fn parse_rule_file(file: &str, text: &str) -> Result<Vec<TextRule>> {
    let mut rules: Vec<TextRule> = vec![];
    let mut comment: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            comment = None;
            continue;
        }
        if let Some(c) = trimmed.strip_prefix('#') {
            comment = Some(c.trim().to_string());
            continue;
        }
        let error = |rule: &str, message: String| Error::Rule {
            file: file.to_string(),
            line: line_no,
            rule: rule.to_string(),
            message,
        };
        let (name, rest) = trimmed
            .split_once(':')
            .ok_or_else(|| error("?", "expected `NAME: LHS => RHS [if CONDITIONS]`".into()))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c)) {
            return Err(error(name, "a rule name is letters, digits, - _ /".into()));
        }
        let comment_text = comment.take().ok_or_else(|| {
            error(
                name,
                "a rule needs a `#` comment line above it stating its identity".into(),
            )
        })?;
        let (lhs, rhs) = rest
            .split_once("=>")
            .ok_or_else(|| error(name, "expected `=>` between the two sides".into()))?;
        let (rhs, conditions) = match rhs.split_once(" if ") {
            Some((r, c)) => (r, c),
            None => (rhs, ""),
        };
        let lhs: Pattern<Op> = lhs
            .trim()
            .parse()
            .map_err(|e| error(name, format!("left-hand side: {e}")))?;
        let rhs: Pattern<Op> = rhs
            .trim()
            .parse()
            .map_err(|e| error(name, format!("right-hand side: {e}")))?;
        let tests = conditions
            .split(',')
            .filter(|c| !c.trim().is_empty())
            .map(parse_test)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| error(name, e))?;
        let bound = lhs.vars();
        for v in rhs.vars() {
            if !bound.contains(&v) {
                return Err(error(name, format!("{v} appears on the right but not on the left")));
            }
        }
        for t in &tests {
            let vars = match t {
                Test::Mapped(v) | Test::Unmapped(v) | Test::RankConst(v, _, _) => vec![*v],
                Test::RankRank(v, _, w) => vec![*v, *w],
            };
            if let Some(v) = vars.iter().find(|v| !bound.contains(v)) {
                return Err(error(
                    name,
                    format!("condition on {v}, which the left-hand side does not bind"),
                ));
            }
        }
        if rules.iter().any(|r| r.name == name) {
            return Err(error(
                name,
                "a rule of this name is already defined in this file".into(),
            ));
        }
        rules.push(TextRule {
            name: name.to_string(),
            comment: comment_text,
            lhs,
            rhs,
            conditions: Conditions(tests),
            origin: format!("{file}:{line_no}"),
        });
    }
    Ok(rules)
}

/// The rules a batcher runs: text rules and named Rust appliers.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// The text rules.
    pub text: Vec<TextRule>,
    /// The names of the Rust appliers in use.
    pub appliers: Vec<String>,
}

impl RuleSet {
    /// The rules shipped in `rules/` and every Rust applier.
    pub fn builtin() -> RuleSet {
        let mut text = vec![];
        for (file, contents) in BUILTIN_RULE_FILES {
            text.extend(parse_rule_file(file, contents).expect("the built-in rules parse"));
        }
        RuleSet {
            text,
            appliers: RUST_APPLIERS.iter().map(|(n, _)| n.to_string()).collect(),
        }
    }

    /// Adds every `*.rules` file in `dir` (sorted by name).
    pub fn with_dir(mut self, dir: &Path) -> Result<RuleSet> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rules"))
            .collect();
        files.sort();
        for path in files {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("{file}: {e}")))?;
            for rule in parse_rule_file(&file, &text)? {
                if let Some(existing) = self.text.iter().find(|r| r.name == rule.name) {
                    let line = rule.origin.rsplit(':').next().and_then(|l| l.parse().ok()).unwrap_or(0);
                    return Err(Error::Rule {
                        file,
                        line,
                        rule: rule.name.clone(),
                        message: format!("a rule of this name is already defined at {}", existing.origin),
                    });
                }
                self.text.push(rule);
            }
        }
        Ok(self)
    }

    /// This set without the rule or applier called `name` (to see what happens without it).
    pub fn without(mut self, name: &str) -> RuleSet {
        self.text.retain(|r| r.name != name);
        self.appliers.retain(|a| a != name);
        self
    }

    /// The egg rewrites.
    pub fn rewrites(&self) -> Vec<Rewrite<Op, ShapeAnalysis>> {
        let mut out: Vec<Rewrite<Op, ShapeAnalysis>> = self
            .text
            .iter()
            .map(|r| {
                let applier = ConditionalApplier {
                    condition: r.conditions.clone(),
                    applier: r.rhs.clone(),
                };
                Rewrite::new(r.name.as_str(), r.lhs.clone(), applier).expect("checked when parsed")
            })
            .collect();
        if self.appliers.iter().any(|a| a == "broadcast-align") {
            for op in ["+", "-", "*", "/"] {
                let lhs: Pattern<Op> = format!("(vmap ({op} ?a ?b))").parse().unwrap();
                out.push(Rewrite::new(format!("broadcast-align{op}"), lhs, BroadcastAlign).unwrap());
            }
        }
        if self.appliers.iter().any(|a| a == "axis-shift") {
            for op in ["sum", "mean", "max", "expand"] {
                let lhs: Pattern<Op> = format!("(vmap ({op} ?a ?k))").parse().unwrap();
                out.push(Rewrite::new(format!("axis-shift/{op}"), lhs, AxisShift).unwrap());
            }
        }
        out
    }
}

fn var(name: &str) -> Var {
    name.parse().unwrap()
}

/// Adds `node` and merges it into `eclass`; returns it if that changed anything.
fn union_with(egraph: &mut Graph, eclass: Id, node: Op) -> Vec<Id> {
    let id = egraph.add(node);
    if egraph.union(eclass, id) {
        vec![id]
    } else {
        vec![]
    }
}

/// `broadcast-align`: `(vmap (OP ?a ?b))` where a mapped operand has a lower
/// rank than the result: its batch axis must be followed by size-1 axes so
/// that numpy broadcasting lines its axes up with the other operand's.
struct BroadcastAlign;

impl Applier<Op, ShapeAnalysis> for BroadcastAlign {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let operands = [subst[var("?a")], subst[var("?b")]];
        let rank = operands.iter().map(|&c| egraph[c].data.shape.rank()).max().unwrap();
        let misaligned = operands
            .iter()
            .any(|&c| egraph[c].data.mapped && egraph[c].data.shape.rank() < rank);
        if !misaligned {
            return vec![];
        }
        let mut batched = [operands[0], operands[1]];
        for (slot, &c) in batched.iter_mut().zip(&operands) {
            if egraph[c].data.mapped {
                let mut v = egraph.add(Op::Vmap(c));
                for _ in egraph[c].data.shape.rank()..rank {
                    let one = egraph.add(Op::Num(Num(1.0)));
                    v = egraph.add(Op::Expand([v, one]));
                }
                *slot = v;
            }
        }
        let node = match rule.as_str().trim_start_matches("broadcast-align") {
            "+" => Op::Add(batched),
            "-" => Op::Sub(batched),
            "*" => Op::Mul(batched),
            _ => Op::Div(batched),
        };
        union_with(egraph, eclass, node)
    }
}

/// `axis-shift`: `(vmap (OP ?a ?k))` is `(OP (vmap ?a) k+1)` for the
/// reductions along an axis and for `expand`: the batch axis comes first.
struct AxisShift;

impl Applier<Op, ShapeAnalysis> for AxisShift {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let (a, k) = (subst[var("?a")], subst[var("?k")]);
        let Some(axis) = egraph[k].data.constant else {
            return vec![];
        };
        let batched = egraph.add(Op::Vmap(a));
        let shifted = egraph.add(Op::Num(Num(axis + 1.0)));
        let children = [batched, shifted];
        let node = match rule.as_str().trim_start_matches("axis-shift/") {
            "sum" => Op::SumAxis(children),
            "mean" => Op::MeanAxis(children),
            "max" => Op::MaxAxis(children),
            _ => Op::Expand(children),
        };
        union_with(egraph, eclass, node)
    }
}
