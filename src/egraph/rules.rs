//! Rewrite rules: text rules from `rules/*.rules` (egg patterns with optional
//! conditions on the shape analysis), the rule classes generated from the op
//! tables (`class_rules`), and the few named Rust appliers (`appliers`) for
//! rules that need arithmetic on shapes or axes. All three are [`Rule`]s,
//! listed and soundness-checked alike.
//!
//! A rule file is a list of rules, each one line
//! `NAME: LHS => RHS [if CONDITION, ...]` directly below a `#` comment line
//! that states the identity. Conditions: `mapped(?a)`, `unmapped(?a)`,
//! `rank(?a) OP N` and `rank(?a) OP rank(?b)` with OP one of
//! `== != < <= > >=`.

use crate::egraph::analysis::{Graph, ShapeAnalysis};
use crate::egraph::rule_search::RuleSearcher;
use crate::egraph::{appliers, class_rules};
use crate::error::{Conflict, Error, Result};
use crate::ir::{Binary, Op, Unary};
use egg::{Condition, ConditionalApplier, ENodeOrVar, Id, Pattern, Rewrite, Subst, Var};
use std::collections::HashSet;
use std::path::Path;

/// The rule files shipped with the crate, compiled in.
pub const BUILTIN_RULE_FILES: [(&str, &str); 2] = [
    ("rules/batching.rules", include_str!("../../rules/batching.rules")),
    ("rules/algebra.rules", include_str!("../../rules/algebra.rules")),
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

impl std::fmt::Display for Compare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compare::Eq => "==",
            Compare::Ne => "!=",
            Compare::Lt => "<",
            Compare::Le => "<=",
            Compare::Gt => ">",
            Compare::Ge => ">=",
        })
    }
}

impl std::fmt::Display for Conditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, test) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match test {
                Test::Mapped(v) => write!(f, "mapped({v})")?,
                Test::Unmapped(v) => write!(f, "unmapped({v})")?,
                Test::RankConst(v, c, n) => write!(f, "rank({v}) {c} {n}")?,
                Test::RankRank(v, c, w) => write!(f, "rank({v}) {c} rank({w})")?,
            }
        }
        Ok(())
    }
}

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

/// One text rule as written.
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

/// egg's s-expression errors print a Rust debug struct
/// (`symbolic expression parse error: ParseError { msg: "...", line: 1, col: 15 }`);
/// this turns one into `... (column 15 of the pattern)`, and leaves other text alone.
fn tidy_sexp_error(text: &str) -> String {
    let Some(rest) = text.strip_prefix("symbolic expression parse error: ParseError { msg: \"") else {
        return text.to_string();
    };
    let Some((message, tail)) = rest.split_once("\", ") else {
        return text.to_string();
    };
    let column = tail.split("col: ").nth(1).map(|c| c.trim_end_matches([' ', '}']));
    match column {
        Some(c) => format!("{} (column {c} of the pattern)", message.to_lowercase()),
        None => message.to_lowercase(),
    }
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
        let lhs: Pattern<Op> = lhs.trim().parse().map_err(|e: egg::RecExprParseError<_>| {
            error(name, format!("left-hand side: {}", tidy_sexp_error(&e.to_string())))
        })?;
        let rhs: Pattern<Op> = rhs.trim().parse().map_err(|e: egg::RecExprParseError<_>| {
            error(name, format!("right-hand side: {}", tidy_sexp_error(&e.to_string())))
        })?;
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

/// One rewrite with what a reader and the soundness checker need to know of it.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// The identity it applies, in words.
    pub comment: String,
    /// Where it comes from: `file:line`, the op table of a rule class, or a Rust applier.
    pub origin: String,
    /// The left-hand side (what the soundness checker instantiates).
    pub lhs: Pattern<Op>,
    /// The rewrite itself.
    pub rewrite: Rewrite<Op, ShapeAnalysis>,
    /// The right-hand side of a text rule (a Rust applier's is code).
    pub rhs: Option<Pattern<Op>>,
}

impl Rule {
    /// A text rule as an egg rewrite.
    pub fn from_text(rule: TextRule) -> Rule {
        let applier = ConditionalApplier {
            condition: rule.conditions.clone(),
            applier: rule.rhs.clone(),
        };
        let rewrite = Rewrite::new(rule.name.as_str(), RuleSearcher::new(rule.lhs.clone()), applier)
            .expect("checked when parsed");
        let (lhs, rhs) = (&rule.lhs, &rule.rhs);
        let conditions = if rule.conditions.0.is_empty() {
            String::new()
        } else {
            format!(" if {}", rule.conditions)
        };
        Rule {
            comment: format!("{} [{lhs} => {rhs}{conditions}]", rule.comment),
            name: rule.name,
            origin: rule.origin,
            lhs: rule.lhs,
            rhs: Some(rule.rhs),
            rewrite,
        }
    }
}

/// An elementwise op with its children cleared: which op of the tables it is.
fn elementwise_kind(op: &Op) -> Option<Op> {
    let zero = Id::from(0);
    if let Op::Unary(u, _) = op {
        return Some(Op::Unary(*u, zero));
    }
    if let Op::Binary(b, _) = op {
        return Some(Op::Binary(*b, [zero; 2]));
    }
    None
}

/// The rules a batcher runs.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// Every rule, text rules first.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules shipped in `rules/`, the rule classes of the op tables and every Rust applier.
    pub fn builtin() -> RuleSet {
        let mut rules = vec![];
        for (file, contents) in BUILTIN_RULE_FILES {
            rules.extend(
                parse_rule_file(file, contents)
                    .expect("the built-in rules parse")
                    .into_iter()
                    .map(Rule::from_text),
            );
        }
        rules.extend(class_rules::rules().into_iter().map(Rule::from_text));
        rules.extend(appliers::rules());
        RuleSet { rules }
    }

    /// Only the rules read from `dir` (for checking a user's rules on their own).
    pub fn empty() -> RuleSet {
        RuleSet { rules: vec![] }
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
                if let Some(existing) = self.rules.iter().find(|r| r.name == rule.name) {
                    let line = rule.origin.rsplit(':').next().and_then(|l| l.parse().ok()).unwrap_or(0);
                    return Err(Error::Rule {
                        file,
                        line,
                        rule: rule.name.clone(),
                        message: format!("a rule of this name is already defined at {}", existing.origin),
                    });
                }
                self.rules.push(Rule::from_text(rule));
            }
        }
        Ok(self)
    }

    /// [`RuleSet::with_dir`], then checks each rule the folder added with
    /// `check` and refuses the set if one is unsound, naming the rule and the
    /// instance that shows it, or if no instance exercises one (it is
    /// unchecked, so it cannot be trusted). `check` is the crate's
    /// `check_rule` (`crate::measure`, a fraction of a second per rule): it
    /// runs the interpreter, a later stage than this one.
    pub fn with_checked_dir(
        self,
        dir: &Path,
        check: impl Fn(&Rule) -> std::result::Result<usize, String>,
    ) -> Result<RuleSet> {
        let before = self.rules.len();
        let set = self.with_dir(dir)?;
        for rule in &set.rules[before..] {
            match check(rule) {
                Ok(0) => {
                    return Err(Error::Unsupported(format!(
                        "rule {} ({}) is unchecked: no instance of its left side applies; \
                         `batchgraph rules --check --rules {}` shows every rule's verdict",
                        rule.name,
                        rule.origin,
                        dir.display()
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(Error::UnsoundRule(Conflict::Checked(e))),
            }
        }
        Ok(set)
    }

    /// This set without the rule called `name`, or the family `name/...` (to see what happens without it).
    pub fn without(mut self, name: &str) -> RuleSet {
        let family = format!("{name}/");
        self.rules.retain(|r| r.name != name && !r.name.starts_with(&family));
        self
    }

    /// The egg rewrites.
    pub fn rewrites(&self) -> Vec<Rewrite<Op, ShapeAnalysis>> {
        self.rules.iter().map(|r| r.rewrite.clone()).collect()
    }

    /// The rewrites that can match in `egraph` as it grows: a rule whose
    /// left side needs an elementwise op that neither the e-graph holds nor
    /// any rule makes is left out. egg searches every rule over every class
    /// of its root op each round, so on a long program the rules of ops it
    /// does not use were most of the time. A text rule makes the ops of its
    /// right side; a Rust applier makes the elementwise op it matched, and
    /// `step`, `*` and `+` (the structural rules' padding and broadcasting).
    pub fn rewrites_for(&self, egraph: &Graph) -> Vec<Rewrite<Op, ShapeAnalysis>> {
        let mut made: HashSet<Op> = HashSet::new();
        for class in egraph.classes() {
            made.extend(class.nodes.iter().filter_map(elementwise_kind));
        }
        let zero = Id::from(0);
        made.extend([
            Op::Unary(Unary::Step, zero),
            Op::Binary(Binary::Mul, [zero; 2]),
            Op::Binary(Binary::Add, [zero; 2]),
        ]);
        for rhs in self.rules.iter().filter_map(|r| r.rhs.as_ref()) {
            made.extend(rhs.ast.as_ref().iter().filter_map(|n| match n {
                ENodeOrVar::ENode(op) => elementwise_kind(op),
                ENodeOrVar::Var(_) => None,
            }));
        }
        let can_match = |rule: &&Rule| {
            rule.lhs.ast.as_ref().iter().all(|n| match n {
                ENodeOrVar::ENode(op) => elementwise_kind(op).is_none_or(|kind| made.contains(&kind)),
                ENodeOrVar::Var(_) => true,
            })
        };
        self.rules.iter().filter(can_match).map(|r| r.rewrite.clone()).collect()
    }
}
