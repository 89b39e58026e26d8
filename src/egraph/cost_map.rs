//! The set of classes a choice needs, with each one's cost, as a persistent
//! map: what DAG-aware extraction keeps per class.
//!
//! Along a chain of depth `n` each class needs the `n` classes below it, so
//! a map copied per class holds `n^2` entries in all (a 10,000-step chain
//! needed tens of gigabytes). This map is a treap whose shape is a function
//! of its keys alone (each key's priority is a hash of it), so a parent's map
//! shares every subtree with its children's but the paths to its new keys,
//! and the union of two maps that share subtrees walks only where they
//! differ. Each subtree also keeps its size, the sum of its costs and a hash
//! of its keys, so a total is read off the root and two maps of the same
//! classes are recognised without walking them.

use egg::Id;
use std::rc::Rc;

/// A persistent map from class to cost (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct CostMap(Option<Rc<Node>>);

#[derive(Debug)]
struct Node {
    key: Id,
    cost: f64,
    left: CostMap,
    right: CostMap,
    /// Entries in this subtree.
    len: u32,
    /// Sum of the costs in this subtree.
    sum: f64,
    /// Sum (wrapping) of the hashes of the keys in this subtree.
    keys_hash: u64,
}

/// The key's priority in the treap and its share of a subtree's key hash.
fn hash(key: Id) -> u64 {
    // splitmix64's finaliser: a bijection, so distinct keys get distinct priorities.
    let mut z = (usize::from(key) as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl CostMap {
    /// The map holding one class.
    pub(crate) fn single(key: Id, cost: f64) -> Self {
        CostMap::node(key, cost, CostMap::default(), CostMap::default())
    }

    fn node(key: Id, cost: f64, left: CostMap, right: CostMap) -> Self {
        CostMap(Some(Rc::new(Node {
            key,
            cost,
            len: 1 + left.len() as u32 + right.len() as u32,
            sum: left.total() + cost + right.total(),
            keys_hash: hash(key).wrapping_add(left.keys_hash()).wrapping_add(right.keys_hash()),
            left,
            right,
        })))
    }

    /// How many classes it holds.
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |n| n.len as usize)
    }

    /// The sum of the costs.
    pub(crate) fn total(&self) -> f64 {
        self.0.as_ref().map_or(0.0, |n| n.sum)
    }

    fn keys_hash(&self) -> u64 {
        self.0.as_ref().map_or(0, |n| n.keys_hash)
    }

    /// The cost of `key`, if the map holds it.
    pub(crate) fn get(&self, key: Id) -> Option<f64> {
        let mut at = self;
        while let Some(node) = &at.0 {
            at = match key.cmp(&node.key) {
                std::cmp::Ordering::Less => &node.left,
                std::cmp::Ordering::Greater => &node.right,
                std::cmp::Ordering::Equal => return Some(node.cost),
            };
        }
        None
    }

    /// Every class of `self` and of `other`; a class in both keeps `self`'s cost.
    pub(crate) fn union(&self, other: &CostMap) -> CostMap {
        let (Some(a), Some(b)) = (&self.0, &other.0) else {
            return if self.0.is_some() { self.clone() } else { other.clone() };
        };
        if Rc::ptr_eq(a, b) || (a.len == b.len && a.keys_hash == b.keys_hash && a.key == b.key) {
            return self.clone(); // the same classes: `self`'s costs win
        }
        if Self::above(a.key, b.key) {
            let (less, _, greater) = other.split(a.key);
            self.rebuilt(a, a.cost, a.left.union(&less), a.right.union(&greater))
        } else {
            let (less, mine, greater) = self.split(b.key);
            other.rebuilt(b, mine.unwrap_or(b.cost), less.union(&b.left), greater.union(&b.right))
        }
    }

    /// Whether `a` sits above `b` in the treap: the higher priority (a key breaks a tie).
    fn above(a: Id, b: Id) -> bool {
        (hash(a), a) > (hash(b), b)
    }

    /// `node` (the root of `self`) with the given cost and subtrees; `self`
    /// itself when nothing changed, so that unchanged subtrees stay shared.
    fn rebuilt(&self, node: &Node, cost: f64, left: CostMap, right: CostMap) -> CostMap {
        if cost.to_bits() == node.cost.to_bits() && left.same(&node.left) && right.same(&node.right) {
            self.clone()
        } else {
            CostMap::node(node.key, cost, left, right)
        }
    }

    fn same(&self, other: &CostMap) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Rc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// The classes below `key`, its cost if held, and the classes above it.
    fn split(&self, key: Id) -> (CostMap, Option<f64>, CostMap) {
        let Some(node) = &self.0 else {
            return (CostMap::default(), None, CostMap::default());
        };
        match key.cmp(&node.key) {
            std::cmp::Ordering::Equal => (node.left.clone(), Some(node.cost), node.right.clone()),
            std::cmp::Ordering::Less => {
                let (less, found, greater) = node.left.split(key);
                (less, found, self.rebuilt(node, node.cost, greater, node.right.clone()))
            }
            std::cmp::Ordering::Greater => {
                let (less, found, greater) = node.right.split(key);
                (self.rebuilt(node, node.cost, node.left.clone(), less), found, greater)
            }
        }
    }

    /// Every (class, cost), in order of class.
    #[cfg(test)]
    fn entries(&self) -> Vec<(Id, f64)> {
        let mut out = vec![];
        let mut stack = vec![];
        let mut at = self.clone();
        loop {
            while let Some(node) = at.0.clone() {
                at = node.left.clone();
                stack.push(node);
            }
            let Some(node) = stack.pop() else { return out };
            out.push((node.key, node.cost));
            at = node.right.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn from(entries: &[(usize, f64)]) -> CostMap {
        entries.iter().fold(CostMap::default(), |m, &(k, c)| {
            m.union(&CostMap::single(Id::from(k), c))
        })
    }

    fn model(entries: &[(usize, f64)]) -> BTreeMap<usize, f64> {
        let mut m = BTreeMap::new();
        for &(k, c) in entries {
            m.entry(k).or_insert(c);
        }
        m
    }

    #[test]
    fn union_keeps_every_class_once_with_the_first_maps_cost() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let a: Vec<(usize, f64)> = (0..next(40)).map(|_| (next(60) as usize, next(9) as f64)).collect();
            let b: Vec<(usize, f64)> = (0..next(40)).map(|_| (next(60) as usize, next(9) as f64)).collect();
            let (ma, mb) = (from(&a), from(&b));
            let u = ma.union(&mb);
            let mut expected = model(&a);
            for (k, c) in model(&b) {
                expected.entry(k).or_insert(c);
            }
            let got: Vec<(usize, f64)> = u.entries().into_iter().map(|(k, c)| (usize::from(k), c)).collect();
            assert_eq!(got, expected.clone().into_iter().collect::<Vec<_>>());
            assert_eq!(u.len(), expected.len());
            assert_eq!(u.total(), expected.values().sum::<f64>());
            for k in 0..60 {
                assert_eq!(u.get(Id::from(k)), expected.get(&k).copied());
            }
        }
    }

    #[test]
    fn a_chain_of_maps_shares_its_subtrees() {
        // Each link adds one class to the last: the new nodes are one path, not a copy.
        let mut maps = vec![CostMap::single(Id::from(0), 1.0)];
        for k in 1..20_000 {
            let last = maps.last().unwrap();
            let grown = last.union(&CostMap::single(Id::from(k), 1.0));
            assert_eq!(grown.union(last).len(), k + 1);
            maps.push(grown);
        }
        let distinct = |m: &CostMap, seen: &mut std::collections::HashSet<*const Node>| {
            let mut stack = vec![m.clone()];
            while let Some(CostMap(Some(n))) = stack.pop() {
                if seen.insert(Rc::as_ptr(&n)) {
                    stack.push(n.left.clone());
                    stack.push(n.right.clone());
                }
            }
        };
        let mut seen = std::collections::HashSet::new();
        for m in &maps {
            distinct(m, &mut seen);
        }
        // A copy per map would be 2 * 10^8 nodes; a path per map is about 20,000 * 2 ln(20,000).
        assert!(seen.len() < 20_000 * 40, "{} nodes", seen.len());
        assert_eq!(maps.last().unwrap().total(), 20_000.0);
    }
}
