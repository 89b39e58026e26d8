//! Crossing reduction: the left-to-right order of the nodes in each layer.

use super::layer::Graph;

/// The order found.
pub(crate) struct Ordering {
    /// The nodes of each layer, left to right.
    pub layers: Vec<Vec<usize>>,
    /// Each node's index within its layer.
    pub pos: Vec<usize>,
    /// Crossings between adjacent layers in this order.
    pub crossings: usize,
}

/// Orders the layers: post-order start, then bounded sweeps, keeping the
/// order with the fewest crossings.
pub(crate) fn order(g: &Graph) -> Ordering {
    let n = g.len();
    let key = postorder(g);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); g.layers];
    for v in 0..n {
        layers[g.layer[v]].push(v);
    }
    let mut pos = vec![0usize; n];
    for layer in &mut layers {
        layer.sort_by_key(|&v| key[v]);
        set_pos(layer, &mut pos);
    }
    let mut rank = Vec::new();
    if g.grouped {
        rank = group_rank(g, &layers, &pos);
        for layer in &mut layers {
            make_groups_contiguous(g, layer, &rank);
            set_pos(layer, &mut pos);
        }
    }

    let mut best = layers.clone();
    let mut best_crossings = crossings(g, &layers, &pos);
    // Each sweep costs O((V + E) log V); bigger graphs get fewer.
    let work = n + g.chains.iter().map(|c| c.len()).sum::<usize>();
    let max_rounds = if work < 20_000 {
        24
    } else if work < 100_000 {
        10
    } else {
        4
    };
    let mut stale = 0;
    for round in 0..max_rounds {
        if best_crossings == 0 {
            break;
        }
        let median = round % 2 == 1;
        if g.grouped {
            rank = group_rank(g, &layers, &pos);
        }
        for l in 1..layers.len() {
            reorder(g, &mut layers[l], &mut pos, true, median, &rank);
        }
        transpose(g, &mut layers, &mut pos);
        if g.grouped {
            rank = group_rank(g, &layers, &pos);
        }
        for l in (0..layers.len().saturating_sub(1)).rev() {
            reorder(g, &mut layers[l], &mut pos, false, median, &rank);
        }
        transpose(g, &mut layers, &mut pos);
        let c = crossings(g, &layers, &pos);
        if c < best_crossings {
            best_crossings = c;
            best.clone_from(&layers);
            stale = 0;
        } else {
            stale += 1;
            if stale >= 4 {
                break;
            }
        }
    }
    for layer in &best {
        set_pos(layer, &mut pos);
    }
    Ordering {
        layers: best,
        pos,
        crossings: best_crossings,
    }
}

fn set_pos(layer: &[usize], pos: &mut [usize]) {
    for (i, &v) in layer.iter().enumerate() {
        pos[v] = i;
    }
}

/// Post-order of a depth-first search from the sinks (in index order) up
/// through operands (in edge order), with an explicit stack. Ordering each
/// layer by it draws operand 0's subtree left of operand 1's.
fn postorder(g: &Graph) -> Vec<usize> {
    let n = g.len();
    let mut key = vec![usize::MAX; n];
    let mut visited = vec![false; n];
    let mut next = 0usize;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let roots = (0..g.real).filter(|&v| g.down[v].is_empty()).chain(0..n);
    for root in roots {
        if visited[root] {
            continue;
        }
        visited[root] = true;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (v, i) = *top;
            if let Some(&u) = g.up[v].get(i) {
                top.1 += 1;
                if !visited[u] {
                    visited[u] = true;
                    stack.push((u, 0));
                }
            } else {
                key[v] = next;
                next += 1;
                stack.pop();
            }
        }
    }
    key
}

/// Reorders one layer by the barycenter (or median) of each node's
/// neighbours in the layer above (`from_above`) or below. Nodes with no such
/// neighbours keep their slots.
fn reorder(g: &Graph, layer: &mut Vec<usize>, pos: &mut [usize], from_above: bool, median: bool, rank: &[usize]) {
    let mut movable: Vec<(f64, usize, usize)> = Vec::with_capacity(layer.len());
    let mut fixed = vec![false; layer.len()];
    let mut scratch: Vec<usize> = Vec::new();
    for (slot, &v) in layer.iter().enumerate() {
        let nbrs = if from_above { &g.up[v] } else { &g.down[v] };
        if nbrs.is_empty() {
            fixed[slot] = true;
            continue;
        }
        let value = if median {
            scratch.clear();
            scratch.extend(nbrs.iter().map(|&u| pos[u]));
            scratch.sort_unstable();
            let k = scratch.len();
            (scratch[(k - 1) / 2] + scratch[k / 2]) as f64 / 2.0
        } else {
            nbrs.iter().map(|&u| pos[u] as f64).sum::<f64>() / nbrs.len() as f64
        };
        movable.push((value, slot, v));
    }
    movable.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut sorted = movable.into_iter().map(|m| m.2);
    let old = std::mem::take(layer);
    *layer = old
        .iter()
        .enumerate()
        .map(|(slot, &v)| if fixed[slot] { v } else { sorted.next().unwrap_or(v) })
        .collect();
    if g.grouped {
        make_groups_contiguous(g, layer, rank);
    }
    set_pos(layer, pos);
}

/// Each group's rank in one left-to-right order shared by all layers: by
/// the mean relative position of its members.
fn group_rank(g: &Graph, layers: &[Vec<usize>], pos: &[usize]) -> Vec<usize> {
    let groups = g.group_min_width.len();
    let mut sum = vec![0.0f64; groups];
    let mut count = vec![0usize; groups];
    for layer in layers {
        for &v in layer {
            if let Some(k) = g.group[v] {
                sum[k] += (pos[v] as f64 + 0.5) / layer.len() as f64;
                count[k] += 1;
            }
        }
    }
    let mut by: Vec<usize> = (0..groups).collect();
    by.sort_by(|&a, &b| {
        let key = |k: usize| if count[k] > 0 { sum[k] / count[k] as f64 } else { 0.0 };
        key(a).total_cmp(&key(b)).then(a.cmp(&b))
    });
    let mut rank = vec![0usize; groups];
    for (r, k) in by.into_iter().enumerate() {
        rank[k] = r;
    }
    rank
}

/// Gathers each group's nodes of the layer into one run placed at the mean
/// slot of its members; others keep their relative order. Groups keep the
/// order of `rank` among themselves, the same in every layer, so that no
/// group box can straddle another.
fn make_groups_contiguous(g: &Graph, layer: &mut [usize], rank: &[usize]) {
    // (group, slot) of the members: only the groups present, so the cost
    // does not grow with the number of groups.
    let mut members: Vec<(usize, usize)> = layer
        .iter()
        .enumerate()
        .filter_map(|(slot, &v)| g.group[v].map(|k| (k, slot)))
        .collect();
    if members.is_empty() {
        return;
    }
    members.sort_unstable();
    // Mean slot of each present group, then those places handed out again
    // in rank order.
    let present: Vec<(usize, f64)> = members
        .chunk_by(|a, b| a.0 == b.0)
        .map(|run| (run[0].0, run.iter().map(|m| m.1 as f64).sum::<f64>() / run.len() as f64))
        .collect();
    let mut places: Vec<f64> = present.iter().map(|p| p.1).collect();
    places.sort_by(f64::total_cmp);
    let mut by_rank: Vec<usize> = present.iter().map(|p| p.0).collect();
    by_rank.sort_by_key(|&k| rank[k]);
    let mut place: Vec<(usize, f64)> = by_rank.into_iter().zip(places).collect();
    place.sort_unstable_by_key(|p| p.0);
    let place_of = |k: usize| {
        let i = place.binary_search_by_key(&k, |p| p.0).unwrap_or(0);
        place[i].1
    };
    let mut keyed: Vec<(f64, usize, usize, usize)> = layer
        .iter()
        .enumerate()
        .map(|(slot, &v)| match g.group[v] {
            Some(k) => (place_of(k), 1 + rank[k], slot, v),
            None => (slot as f64, 0, slot, v),
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (slot, k) in keyed.into_iter().enumerate() {
        layer[slot] = k.3;
    }
}

/// Pairs `(a, b)`, `a` from `left`, `b` from `right` (both sorted), with
/// `a > b`: the crossings between two neighbouring nodes' edges to one side.
fn pairs_greater(left: &[usize], right: &[usize]) -> usize {
    let mut j = 0;
    let mut count = 0;
    for &a in left {
        while j < right.len() && right[j] < a {
            j += 1;
        }
        count += j;
    }
    count
}

/// Swaps neighbouring nodes of the same group while that removes crossings:
/// a few passes over each layer.
fn transpose(g: &Graph, layers: &mut [Vec<usize>], pos: &mut [usize]) {
    // Sorted neighbour positions of the layer's nodes, flat: node at slot i
    // owns ups[up_at[i]..up_at[i + 1]] (likewise downs); `owner[i]` says
    // whose lists slot i now holds, as swaps move nodes.
    let mut ups: Vec<usize> = Vec::new();
    let mut downs: Vec<usize> = Vec::new();
    let mut up_at: Vec<usize> = Vec::new();
    let mut down_at: Vec<usize> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    let fill = |flat: &mut Vec<usize>, at: &mut Vec<usize>, nbrs: &[usize], pos: &[usize]| {
        let start = flat.len();
        flat.extend(nbrs.iter().map(|&u| pos[u]));
        flat[start..].sort_unstable();
        at.push(flat.len());
    };
    for l in 0..layers.len() {
        let len = layers[l].len();
        if len < 2 {
            continue;
        }
        ups.clear();
        downs.clear();
        up_at.clear();
        down_at.clear();
        up_at.push(0);
        down_at.push(0);
        for &v in &layers[l] {
            fill(&mut ups, &mut up_at, &g.up[v], pos);
            fill(&mut downs, &mut down_at, &g.down[v], pos);
        }
        owner.clear();
        owner.extend(0..len);
        let up = |i: usize| &ups[up_at[i]..up_at[i + 1]];
        let down = |i: usize| &downs[down_at[i]..down_at[i + 1]];
        for _pass in 0..4 {
            let mut improved = false;
            for i in 0..len - 1 {
                let (u, v) = (layers[l][i], layers[l][i + 1]);
                if g.group[u] != g.group[v] {
                    continue;
                }
                let (a, b) = (owner[i], owner[i + 1]);
                let now = pairs_greater(up(a), up(b)) + pairs_greater(down(a), down(b));
                let swapped = pairs_greater(up(b), up(a)) + pairs_greater(down(b), down(a));
                if swapped < now {
                    layers[l].swap(i, i + 1);
                    owner.swap(i, i + 1);
                    pos[u] = i + 1;
                    pos[v] = i;
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
    }
}

/// Crossings between all adjacent layers, each pair counted as inversions
/// with a Fenwick tree: O(E log V).
pub(crate) fn crossings(g: &Graph, layers: &[Vec<usize>], pos: &[usize]) -> usize {
    let mut total = 0usize;
    let mut targets: Vec<usize> = Vec::new();
    let mut tree: Vec<usize> = Vec::new();
    for l in 0..layers.len().saturating_sub(1) {
        targets.clear();
        for &u in &layers[l] {
            let start = targets.len();
            targets.extend(g.down[u].iter().map(|&w| pos[w]));
            targets[start..].sort_unstable();
        }
        let width = layers[l + 1].len();
        tree.clear();
        tree.resize(width + 1, 0);
        for (seen, &t) in targets.iter().enumerate() {
            // Earlier edges ending at or left of t do not cross this one.
            let mut i = t + 1;
            let mut not_greater = 0;
            while i > 0 {
                not_greater += tree[i];
                i &= i - 1;
            }
            total += seen - not_greater;
            let mut i = t + 1;
            while i <= width {
                tree[i] += 1;
                i += i & i.wrapping_neg();
            }
        }
    }
    total
}
