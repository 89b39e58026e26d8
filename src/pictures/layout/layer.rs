//! Checks, layering and the layered graph with dummy nodes.

use super::text::{clip, node_size, text_width, GROUP_SIZE, MAX_GROUP_CHARS};
use super::{Limits, Picture, PictureError};
use std::collections::VecDeque;

/// The layered graph: the picture's nodes (ids `0..real`) followed by dummy
/// nodes, every edge cut into segments between adjacent layers.
pub(crate) struct Graph {
    /// Number of real nodes; ids at or past it are dummies.
    pub real: usize,
    /// Number of layers.
    pub layers: usize,
    /// Layer of each node.
    pub layer: Vec<usize>,
    /// Width of each node (0 for dummies).
    pub width: Vec<f64>,
    /// Height of each node (0 for dummies).
    pub height: Vec<f64>,
    /// Group of each node; a dummy takes the group of its edge's target (or
    /// else source) when it lies in the layers that group spans.
    pub group: Vec<Option<usize>>,
    /// Neighbours in the layer above, one entry per segment, in edge order.
    pub up: Vec<Vec<usize>>,
    /// Neighbours in the layer below, one entry per segment, in edge order.
    pub down: Vec<Vec<usize>>,
    /// For each picture edge, the nodes it passes: source, dummies, target.
    pub chains: Vec<Vec<usize>>,
    /// Whether any node is in a group.
    pub grouped: bool,
    /// Least width of each group's box, room for its label.
    pub group_min_width: Vec<f64>,
}

impl Graph {
    /// Number of nodes, dummies included.
    pub fn len(&self) -> usize {
        self.layer.len()
    }

    /// Whether `v` is a dummy node.
    pub fn is_dummy(&self, v: usize) -> bool {
        v >= self.real
    }
}

/// Checks the picture against the limits and builds the layered graph.
pub(crate) fn build(picture: &Picture, limits: &Limits) -> Result<Graph, PictureError> {
    let n = picture.nodes.len();
    if n > limits.max_nodes {
        return Err(PictureError::TooManyNodes {
            count: n,
            limit: limits.max_nodes,
        });
    }
    let m = picture.edges.len();
    if m > limits.max_edges {
        return Err(PictureError::TooManyEdges {
            count: m,
            limit: limits.max_edges,
        });
    }
    for (edge, e) in picture.edges.iter().enumerate() {
        for node in [e.from, e.to] {
            if node >= n {
                return Err(PictureError::EdgeOutOfRange { edge, node, nodes: n });
            }
        }
    }
    let groups = picture.groups.len();
    for (node, p) in picture.nodes.iter().enumerate() {
        if let Some(group) = p.group.filter(|&k| k >= groups) {
            return Err(PictureError::GroupOutOfRange { node, group, groups });
        }
    }

    let ends: Vec<(usize, usize)> = picture.edges.iter().map(|e| (e.from, e.to)).collect();
    let groups: Vec<Option<usize>> = picture.nodes.iter().map(|p| p.group).collect();
    let layer = assign_layers(n, &ends, &groups)?;

    let dummies = ends
        .iter()
        .fold(0usize, |sum, &(u, v)| sum.saturating_add(layer[v] - layer[u] - 1));
    if dummies > limits.max_dummies {
        return Err(PictureError::TooManyDummies {
            count: dummies,
            limit: limits.max_dummies,
        });
    }

    let total = n + dummies;
    let mut g = Graph {
        real: n,
        layers: layer.iter().map(|&l| l + 1).max().unwrap_or(0),
        layer,
        width: Vec::with_capacity(total),
        height: Vec::with_capacity(total),
        group: picture.nodes.iter().map(|p| p.group).collect(),
        up: vec![Vec::new(); total],
        down: vec![Vec::new(); total],
        chains: Vec::with_capacity(m),
        grouped: picture.nodes.iter().any(|p| p.group.is_some()),
        group_min_width: picture
            .groups
            .iter()
            .map(|k| text_width(&clip(&k.label, MAX_GROUP_CHARS), GROUP_SIZE, false) + 28.0)
            .collect(),
    };
    g.layer.reserve(dummies);
    g.group.reserve(dummies);
    for node in &picture.nodes {
        let (w, h) = node_size(node);
        g.width.push(w);
        g.height.push(h);
    }
    // Layers each group spans.
    let mut span = vec![(usize::MAX, 0usize); picture.groups.len()];
    for v in 0..n {
        if let Some(k) = g.group[v] {
            span[k] = (span[k].0.min(g.layer[v]), span[k].1.max(g.layer[v]));
        }
    }
    for &(u, v) in &ends {
        let mut chain = Vec::with_capacity(g.layer[v] - g.layer[u] + 1);
        chain.push(u);
        for l in g.layer[u] + 1..g.layer[v] {
            // A dummy within the span of its target's (or source's) group
            // belongs to it: the edge runs inside that box.
            let inside = |end: usize| g.group[end].filter(|&k| (span[k].0..=span[k].1).contains(&l));
            let group = inside(v).or_else(|| inside(u));
            let d = g.layer.len();
            g.layer.push(l);
            g.width.push(0.0);
            g.height.push(0.0);
            g.group.push(group);
            chain.push(d);
        }
        chain.push(v);
        for pair in chain.windows(2) {
            g.down[pair[0]].push(pair[1]);
            g.up[pair[1]].push(pair[0]);
        }
        g.chains.push(chain);
    }
    Ok(g)
}

/// A layer for every node such that every edge goes at least one layer
/// down: longest path from the sources, then nodes with more users than
/// operands pulled down next to their first user; nodes outside a group
/// moved above (or below) it when they only feed (or read) it. Fails on a
/// cycle.
pub(crate) fn assign_layers(
    n: usize,
    edges: &[(usize, usize)],
    group: &[Option<usize>],
) -> Result<Vec<usize>, PictureError> {
    let mut succ_start = vec![0usize; n + 1];
    let mut indeg = vec![0usize; n];
    for &(u, v) in edges {
        succ_start[u + 1] += 1;
        indeg[v] += 1;
    }
    for i in 0..n {
        succ_start[i + 1] += succ_start[i];
    }
    let mut fill = succ_start.clone();
    let mut succ = vec![0usize; edges.len()];
    for &(u, v) in edges {
        succ[fill[u]] = v;
        fill[u] += 1;
    }
    let succs = |u: usize| &succ[succ_start[u]..succ_start[u + 1]];

    // Kahn's algorithm, sources in index order.
    let mut remaining = indeg.clone();
    let mut queue: VecDeque<usize> = (0..n).filter(|&v| remaining[v] == 0).collect();
    let mut topo = Vec::with_capacity(n);
    while let Some(u) = queue.pop_front() {
        topo.push(u);
        for &v in succs(u) {
            remaining[v] -= 1;
            if remaining[v] == 0 {
                queue.push_back(v);
            }
        }
    }
    if topo.len() < n {
        return Err(PictureError::Cycle {
            node: node_on_cycle(n, edges, &remaining),
        });
    }

    let mut layer = vec![0usize; n];
    for &u in &topo {
        for &v in succs(u) {
            layer[v] = layer[v].max(layer[u] + 1);
        }
    }
    // Pull down nodes whose outgoing edges outnumber their incoming ones:
    // lowering such a node by one layer shortens edges overall. Successors
    // are final when a node is reached in reverse topological order.
    for &u in topo.iter().rev() {
        let out = succs(u);
        if out.len() > indeg[u] {
            let lowest = out.iter().map(|&v| layer[v]).min().unwrap_or(0);
            if lowest > layer[u] + 1 {
                layer[u] = lowest - 1;
            }
        }
    }
    if group.iter().any(Option::is_some) {
        let plain = layer.clone();
        clear_groups(&mut layer, edges, group);
        if edges.iter().any(|&(u, v)| layer[u] >= layer[v]) {
            // Cannot happen (see clear_groups); never draw an edge upward.
            layer = plain;
        }
        compact(&mut layer);
    }
    Ok(layer)
}

/// Moves ungrouped nodes out of the layers their groups span: above a group
/// they feed, below one they read, where their other edges allow it, so the
/// group boxes stay clear.
fn clear_groups(layer: &mut [usize], edges: &[(usize, usize)], group: &[Option<usize>]) {
    let n = layer.len();
    let groups = group.iter().flatten().max().map_or(0, |m| m + 1);
    let mut span = vec![(usize::MAX, 0usize); groups];
    for v in 0..n {
        if let Some(k) = group[v] {
            span[k] = (span[k].0.min(layer[v]), span[k].1.max(layer[v]));
        }
    }
    // Lifts first, then pushes, each pass with bounds from the layers
    // before it: lifts only lower layer numbers, so stale lower bounds stay
    // safe, and likewise for pushes and upper bounds.
    let mut lowest = vec![0usize; n];
    let mut feeds = vec![usize::MAX; n];
    for &(u, v) in edges {
        lowest[v] = lowest[v].max(layer[u] + 1);
        if let (None, Some(k)) = (group[u], group[v]) {
            feeds[u] = feeds[u].min(span[k].0);
        }
    }
    for v in 0..n {
        if group[v].is_none() && feeds[v] != usize::MAX && feeds[v] > 0 {
            let target = feeds[v] - 1;
            if layer[v] > target && target >= lowest[v] {
                layer[v] = target;
            }
        }
    }
    let mut highest = vec![usize::MAX; n];
    let mut reads = vec![None::<usize>; n];
    for &(u, v) in edges {
        highest[u] = highest[u].min(layer[v].saturating_sub(1));
        if let (Some(k), None) = (group[u], group[v]) {
            reads[v] = Some(reads[v].map_or(span[k].1, |r| r.max(span[k].1)));
        }
    }
    for v in 0..n {
        if let (None, Some(last)) = (group[v], reads[v]) {
            let target = last + 1;
            if layer[v] < target && target <= highest[v] {
                layer[v] = target;
            }
        }
    }
}

/// Renumbers layers so that none is empty, keeping their order.
fn compact(layer: &mut [usize]) {
    let count = layer.iter().map(|&l| l + 1).max().unwrap_or(0);
    let mut used = vec![false; count];
    for &l in layer.iter() {
        used[l] = true;
    }
    let mut new = vec![0usize; count];
    let mut next = 0;
    for l in 0..count {
        new[l] = next;
        if used[l] {
            next += 1;
        }
    }
    for l in layer.iter_mut() {
        *l = new[*l];
    }
}

/// A node on a cycle, given the in-degrees left after Kahn's algorithm
/// stopped: every node still with in-degree > 0 has a predecessor in the
/// same state, so walking back from one must repeat a node within n steps.
fn node_on_cycle(n: usize, edges: &[(usize, usize)], remaining: &[usize]) -> usize {
    let mut some_pred = vec![usize::MAX; n];
    for &(u, v) in edges {
        if remaining[u] > 0 && remaining[v] > 0 {
            some_pred[v] = u;
        }
    }
    let mut seen = vec![false; n];
    let mut v = (0..n).find(|&v| remaining[v] > 0).unwrap_or(0);
    for _ in 0..=n {
        if seen[v] || some_pred[v] == usize::MAX {
            break;
        }
        seen[v] = true;
        v = some_pred[v];
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_go_down_and_sources_come_down() {
        // 0 -> 1 -> 2 -> 3, constant 4 used only by 3.
        let layer = assign_layers(5, &[(0, 1), (1, 2), (2, 3), (4, 3)], &[None; 5]).unwrap();
        assert_eq!(layer, vec![0, 1, 2, 3, 2]);
    }

    #[test]
    fn cycle_found() {
        let err = assign_layers(4, &[(0, 1), (1, 2), (2, 1), (2, 3)], &[None; 4]).unwrap_err();
        match err {
            PictureError::Cycle { node } => assert!(node == 1 || node == 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            assign_layers(1, &[(0, 0)], &[None]),
            Err(PictureError::Cycle { node: 0 })
        ));
    }
}
