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
//!
//! The nodes live in one arena ([`CostMaps`]) and are counted by hand: a map
//! is an index, [`CostMaps::release`] gives a node back to the arena's free
//! list when its last user lets go, and dropping the arena frees every node
//! at once. With a reference-counted box per node, the allocator's `malloc`
//! and `free` and the recursive drop of every class's map at the end were
//! half of the extraction of a long program.

use egg::Id;

/// A persistent map from class to cost: an index into a [`CostMaps`] arena
/// (see the module docs). Whoever holds one owns one count of its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CostMap(u32);

impl CostMap {
    /// The map holding nothing (needs no releasing).
    pub(crate) const EMPTY: CostMap = CostMap(u32::MAX);

    fn is_empty(self) -> bool {
        self == CostMap::EMPTY
    }
}

#[derive(Clone, Debug)]
struct Node {
    key: Id,
    /// Users of this node: maps held outside and parent nodes.
    refs: u32,
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

/// The arena every [`CostMap`] of one extraction lives in.
#[derive(Debug, Default)]
pub(crate) struct CostMaps {
    nodes: Vec<Node>,
    /// Nodes given back, to be reused.
    free: Vec<u32>,
    /// Scratch for [`CostMaps::release`].
    pending: Vec<CostMap>,
}

/// The key's priority in the treap and its share of a subtree's key hash.
fn hash(key: Id) -> u64 {
    // splitmix64's finaliser: a bijection, so distinct keys get distinct priorities.
    let mut z = (usize::from(key) as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether key `a` sits above key `b` in the treap: the higher priority (a key breaks a tie).
fn above(a: Id, b: Id) -> bool {
    (hash(a), a) > (hash(b), b)
}

impl CostMaps {
    fn at(&self, map: CostMap) -> &Node {
        &self.nodes[map.0 as usize]
    }

    /// The map holding one class (owned by the caller).
    pub(crate) fn single(&mut self, key: Id, cost: f64) -> CostMap {
        self.node(key, cost, CostMap::EMPTY, CostMap::EMPTY)
    }

    /// A new node over `left` and `right`, whose counts it takes over.
    fn node(&mut self, key: Id, cost: f64, left: CostMap, right: CostMap) -> CostMap {
        let node = Node {
            key,
            refs: 1,
            cost,
            len: 1 + self.len(left) as u32 + self.len(right) as u32,
            sum: self.total(left) + cost + self.total(right),
            keys_hash: hash(key)
                .wrapping_add(self.keys_hash(left))
                .wrapping_add(self.keys_hash(right)),
            left,
            right,
        };
        match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                CostMap(slot)
            }
            None => {
                let slot = u32::try_from(self.nodes.len()).expect("fewer than 2^32 cost-map nodes");
                assert!(slot != u32::MAX, "fewer than 2^32 - 1 cost-map nodes");
                self.nodes.push(node);
                CostMap(slot)
            }
        }
    }

    /// Another count of `map`, for a second owner.
    pub(crate) fn retain(&mut self, map: CostMap) -> CostMap {
        if !map.is_empty() {
            self.nodes[map.0 as usize].refs += 1;
        }
        map
    }

    /// Gives up one count of `map`; nodes no one uses any more go back to the arena.
    pub(crate) fn release(&mut self, map: CostMap) {
        if !self.unref(map) {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.push(map);
        while let Some(map) = pending.pop() {
            let node = &self.nodes[map.0 as usize];
            let (left, right) = (node.left, node.right);
            self.free.push(map.0);
            for child in [left, right] {
                if self.unref(child) {
                    pending.push(child);
                }
            }
        }
        self.pending = pending;
    }

    /// Takes one count off `map`; whether that was its last.
    fn unref(&mut self, map: CostMap) -> bool {
        if map.is_empty() {
            return false;
        }
        let node = &mut self.nodes[map.0 as usize];
        node.refs -= 1;
        node.refs == 0
    }

    /// How many classes `map` holds.
    pub(crate) fn len(&self, map: CostMap) -> usize {
        if map.is_empty() {
            0
        } else {
            self.at(map).len as usize
        }
    }

    /// The sum of `map`'s costs.
    pub(crate) fn total(&self, map: CostMap) -> f64 {
        if map.is_empty() {
            0.0
        } else {
            self.at(map).sum
        }
    }

    fn keys_hash(&self, map: CostMap) -> u64 {
        if map.is_empty() {
            0
        } else {
            self.at(map).keys_hash
        }
    }

    /// The cost of `key` in `map`, if it holds it.
    pub(crate) fn get(&self, map: CostMap, key: Id) -> Option<f64> {
        let mut at = map;
        while !at.is_empty() {
            let node = self.at(at);
            at = match key.cmp(&node.key) {
                std::cmp::Ordering::Less => node.left,
                std::cmp::Ordering::Greater => node.right,
                std::cmp::Ordering::Equal => return Some(node.cost),
            };
        }
        None
    }

    /// Every class of `a` and of `b` (owned by the caller); a class in both keeps `a`'s cost.
    pub(crate) fn union(&mut self, a: CostMap, b: CostMap) -> CostMap {
        if b.is_empty() {
            return self.retain(a);
        }
        if a.is_empty() {
            return self.retain(b);
        }
        let (na, nb) = (self.at(a).clone(), self.at(b).clone());
        if a == b || (na.len == nb.len && na.keys_hash == nb.keys_hash && na.key == nb.key) {
            return self.retain(a); // the same classes: `a`'s costs win
        }
        if above(na.key, nb.key) {
            let (less, _, greater) = self.split(b, na.key);
            let left = self.union(na.left, less);
            let right = self.union(na.right, greater);
            self.release(less);
            self.release(greater);
            self.rebuilt(a, na.cost, left, right)
        } else {
            let (less, mine, greater) = self.split(a, nb.key);
            let left = self.union(less, nb.left);
            let right = self.union(greater, nb.right);
            self.release(less);
            self.release(greater);
            self.rebuilt(b, mine.unwrap_or(nb.cost), left, right)
        }
    }

    /// The root of `map` with the given cost and subtrees (whose counts it
    /// takes over); `map` itself when nothing changed, so that unchanged
    /// subtrees stay shared.
    fn rebuilt(&mut self, map: CostMap, cost: f64, left: CostMap, right: CostMap) -> CostMap {
        let node = self.at(map);
        if cost.to_bits() == node.cost.to_bits() && left == node.left && right == node.right {
            self.release(left);
            self.release(right);
            self.retain(map)
        } else {
            let key = node.key;
            self.node(key, cost, left, right)
        }
    }

    /// The classes of `map` below `key` (owned), its cost if held, and the
    /// classes above it (owned).
    fn split(&mut self, map: CostMap, key: Id) -> (CostMap, Option<f64>, CostMap) {
        if map.is_empty() {
            return (CostMap::EMPTY, None, CostMap::EMPTY);
        }
        let node = self.at(map).clone();
        match key.cmp(&node.key) {
            std::cmp::Ordering::Equal => (self.retain(node.left), Some(node.cost), self.retain(node.right)),
            std::cmp::Ordering::Less => {
                let (less, found, greater) = self.split(node.left, key);
                let right = self.retain(node.right);
                (less, found, self.rebuilt(map, node.cost, greater, right))
            }
            std::cmp::Ordering::Greater => {
                let (less, found, greater) = self.split(node.right, key);
                let left = self.retain(node.left);
                (self.rebuilt(map, node.cost, left, less), found, greater)
            }
        }
    }

    /// Every (class, cost) of `map`, in order of class.
    #[cfg(test)]
    fn entries(&self, map: CostMap) -> Vec<(Id, f64)> {
        let mut out = vec![];
        let mut stack = vec![];
        let mut at = map;
        loop {
            while !at.is_empty() {
                stack.push(at);
                at = self.at(at).left;
            }
            let Some(node) = stack.pop() else { return out };
            out.push((self.at(node).key, self.at(node).cost));
            at = self.at(node).right;
        }
    }

    /// Nodes in use (not on the free list).
    #[cfg(test)]
    fn live(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn from(maps: &mut CostMaps, entries: &[(usize, f64)]) -> CostMap {
        entries.iter().fold(CostMap::EMPTY, |m, &(k, c)| {
            let one = maps.single(Id::from(k), c);
            let grown = maps.union(m, one);
            maps.release(one);
            maps.release(m);
            grown
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
        let mut maps = CostMaps::default();
        for _ in 0..200 {
            let a: Vec<(usize, f64)> = (0..next(40)).map(|_| (next(60) as usize, next(9) as f64)).collect();
            let b: Vec<(usize, f64)> = (0..next(40)).map(|_| (next(60) as usize, next(9) as f64)).collect();
            let (ma, mb) = (from(&mut maps, &a), from(&mut maps, &b));
            let u = maps.union(ma, mb);
            let mut expected = model(&a);
            for (k, c) in model(&b) {
                expected.entry(k).or_insert(c);
            }
            let got: Vec<(usize, f64)> = maps.entries(u).into_iter().map(|(k, c)| (usize::from(k), c)).collect();
            assert_eq!(got, expected.clone().into_iter().collect::<Vec<_>>());
            assert_eq!(maps.len(u), expected.len());
            assert_eq!(maps.total(u), expected.values().sum::<f64>());
            for k in 0..60 {
                assert_eq!(maps.get(u, Id::from(k)), expected.get(&k).copied());
            }
            // The inputs are unchanged by the union.
            assert_eq!(maps.len(ma), model(&a).len());
            assert_eq!(maps.len(mb), model(&b).len());
            for m in [u, ma, mb] {
                maps.release(m);
            }
            // Every node went back: the counts balance.
            assert_eq!(maps.live(), 0);
        }
    }

    #[test]
    fn a_chain_of_maps_shares_its_subtrees() {
        // Each link adds one class to the last: the new nodes are one path, not a copy.
        let mut maps = CostMaps::default();
        let mut chain = vec![maps.single(Id::from(0), 1.0)];
        for k in 1..20_000 {
            let last = *chain.last().unwrap();
            let one = maps.single(Id::from(k), 1.0);
            let grown = maps.union(last, one);
            maps.release(one);
            let again = maps.union(grown, last);
            assert_eq!(maps.len(again), k + 1);
            maps.release(again);
            chain.push(grown);
        }
        // A copy per map would be 2 * 10^8 nodes; a path per map is about 20,000 * 2 ln(20,000).
        assert!(maps.live() < 20_000 * 40, "{} nodes", maps.live());
        assert_eq!(maps.total(*chain.last().unwrap()), 20_000.0);
        for m in chain {
            maps.release(m);
        }
        assert_eq!(maps.live(), 0);
    }
}
