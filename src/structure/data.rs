//! Random data with the shapes of the usual benchmarks, from a seed: binary
//! trees whose leaf counts follow the Stanford Sentiment Treebank's (median
//! 18, 95th percentile 35, most 52), split at random, and sentences whose
//! lengths follow WikiNER's (median 20, most 144). Words and labels are
//! uniform over the vocabulary and the classes: the speed of a batch depends
//! on its structure, not on what the words are.

use crate::runtime::Rng;

/// A binary tree: a word at each leaf, two children at each inner node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// A leaf: the word's row in the embedding matrix.
    Leaf(usize),
    /// An inner node: its left and right subtrees.
    Node(Box<Tree>, Box<Tree>),
}

impl Tree {
    /// How many leaves the tree has.
    pub fn leaves(&self) -> usize {
        match self {
            Tree::Leaf(_) => 1,
            Tree::Node(l, r) => l.leaves() + r.leaves(),
        }
    }

    /// The longest path from the root to a leaf, in edges (a leaf alone is 0).
    pub fn depth(&self) -> usize {
        match self {
            Tree::Leaf(_) => 0,
            Tree::Node(l, r) => 1 + l.depth().max(r.depth()),
        }
    }
}

/// A sentence: a word per token and a tag per token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    /// Each token's row in the embedding matrix.
    pub words: Vec<usize>,
    /// Each token's tag.
    pub tags: Vec<usize>,
}

/// A labelled tree: the sentiment class of the whole sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledTree {
    /// The parse tree.
    pub tree: Tree,
    /// Its class.
    pub label: usize,
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = rng.next_f64().max(f64::MIN_POSITIVE);
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A length from a log-normal with the given median and spread, cut to `1..=most`.
fn log_normal_length(rng: &mut Rng, median: f64, sigma: f64, most: usize) -> usize {
    let x = median * (sigma * normal(rng)).exp();
    (x.round() as usize).clamp(1, most)
}

/// Most leaves of an SST tree.
pub const SST_MOST_LEAVES: usize = 52;
/// Longest WikiNER sentence.
pub const WIKINER_LONGEST: usize = 144;

/// A leaf count like SST's: log-normal with median 18 and 95th percentile 35
/// (sigma = ln(35/18)/1.645), at most 52.
pub fn sst_leaf_count(rng: &mut Rng) -> usize {
    log_normal_length(rng, 18.0, (35.0f64 / 18.0).ln() / 1.645, SST_MOST_LEAVES)
}

/// A sentence length like WikiNER's: log-normal with median 20 (sigma 0.5), at most 144.
pub fn wikiner_length(rng: &mut Rng) -> usize {
    log_normal_length(rng, 20.0, 0.5, WIKINER_LONGEST)
}

/// A binary tree over `leaves` leaves (at least one), split at random: the
/// left part takes uniformly 1..leaves-1 of them. Words uniform in `0..vocab`.
pub fn random_tree(rng: &mut Rng, leaves: usize, vocab: usize) -> Tree {
    // Built bottom-up from an explicit stack, so a long tree does not recurse deeply here.
    enum Task {
        Split(usize),
        Join,
    }
    let mut tasks = vec![Task::Split(leaves.max(1))];
    let mut built: Vec<Tree> = vec![];
    while let Some(task) = tasks.pop() {
        match task {
            Task::Split(1) => built.push(Tree::Leaf(rng.below(vocab))),
            Task::Split(n) => {
                let left = 1 + rng.below(n - 1);
                tasks.extend([Task::Join, Task::Split(n - left), Task::Split(left)]);
            }
            Task::Join => {
                let right = built.pop().expect("a right subtree was built");
                let left = built.pop().expect("a left subtree was built");
                built.push(Tree::Node(Box::new(left), Box::new(right)));
            }
        }
    }
    built.pop().expect("one tree")
}

/// `n` labelled trees with SST-like leaf counts, words in `0..vocab`, labels in `0..classes`.
pub fn sst_like_trees(rng: &mut Rng, n: usize, vocab: usize, classes: usize) -> Vec<LabelledTree> {
    (0..n)
        .map(|_| {
            let leaves = sst_leaf_count(rng);
            LabelledTree {
                tree: random_tree(rng, leaves, vocab),
                label: rng.below(classes),
            }
        })
        .collect()
}

/// A sentence of `length` tokens, words in `0..vocab`, tags in `0..tags`.
pub fn random_sentence(rng: &mut Rng, length: usize, vocab: usize, tags: usize) -> Sentence {
    Sentence {
        words: (0..length).map(|_| rng.below(vocab)).collect(),
        tags: (0..length).map(|_| rng.below(tags)).collect(),
    }
}

/// `n` sentences with WikiNER-like lengths.
pub fn wikiner_like_sentences(rng: &mut Rng, n: usize, vocab: usize, tags: usize) -> Vec<Sentence> {
    (0..n)
        .map(|_| {
            let length = wikiner_length(rng);
            random_sentence(rng, length, vocab, tags)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantile(mut xs: Vec<usize>, q: f64) -> usize {
        xs.sort_unstable();
        xs[((xs.len() - 1) as f64 * q).round() as usize]
    }

    #[test]
    fn leaf_counts_and_lengths_follow_the_benchmarks() {
        let mut rng = Rng::new(1);
        let leaves: Vec<usize> = (0..20_000).map(|_| sst_leaf_count(&mut rng)).collect();
        assert_eq!(quantile(leaves.clone(), 0.5), 18);
        assert!((34..=36).contains(&quantile(leaves.clone(), 0.95)));
        assert_eq!(leaves.iter().max(), Some(&SST_MOST_LEAVES));
        let lengths: Vec<usize> = (0..20_000).map(|_| wikiner_length(&mut rng)).collect();
        assert_eq!(quantile(lengths.clone(), 0.5), 20);
        assert!(lengths.iter().all(|&n| (1..=WIKINER_LONGEST).contains(&n)));
    }

    #[test]
    fn trees_have_the_leaves_asked_for_and_repeat_from_a_seed() {
        for n in [1, 2, 3, 18, 52] {
            let tree = random_tree(&mut Rng::new(n as u64), n, 100);
            assert_eq!(tree.leaves(), n);
            assert!(tree.depth() < n.max(1));
            assert_eq!(tree, random_tree(&mut Rng::new(n as u64), n, 100));
        }
    }
}
